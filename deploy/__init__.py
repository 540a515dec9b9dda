"""Deploying to Tencent Cloud: the packaging command (`python -m deploy.package`, `./dev package`),
the code root's entry (`entry.py`, copied in as `index.py`) and the Postman collection made from
`openapi.yaml` (`python -m deploy.postman`). Never imported by the functions themselves."""
