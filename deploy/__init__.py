"""Deploying to Tencent Cloud: the packaging command (`__main__.py`: `python -m deploy`, `./dev package`,
the functions' container image in `image/`), the entry (`entry.py`, copied into the image as
`index.py`) and the Postman collection made from `openapi.yaml` (`python -m deploy.postman`).
Never imported by the functions themselves."""
