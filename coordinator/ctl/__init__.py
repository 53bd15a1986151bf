"""coordctl: the operator's command line over the coordinator's Admin gRPC API.

`connection` resolves where and how to connect (flag > env > config file) and maps
gRPC failures to exit codes; `views` turns responses into the stable `--json`
schema; `render` draws them as tables; `cli` is the argparse front end.
"""
