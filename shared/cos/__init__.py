"""COS, the one outside storage service: one door every COS call goes through.

- `client`       CosBucket (one bucket, retried and classified calls), check_access, the endpoint
                 and its egress check (COS_ENDPOINT under COS_ALLOWLIST)
- `credentials`  the call's keys, else the execution role's
- `errors`       UploadError / AlreadyExists: a COS failure classified once
- `urls`         COS's host pattern and canonical object URLs
"""
