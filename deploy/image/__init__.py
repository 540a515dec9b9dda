"""The functions' container image for SCF: its Dockerfile, its entry server (server.py, copied into
the image as /app/code/server.py), the build of its context (build.py, `./dev package`) and
the check of what its shared objects need from the base (elf.py)."""
