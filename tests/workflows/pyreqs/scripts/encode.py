import socket
import sys

import ujson

with open(snakemake.output[0], "w") as out:  # noqa: F821 (Snakemake defines it for script: rules)
    out.write(ujson.dumps({"host": socket.gethostname(), "python": sys.executable, "ujson": ujson.__version__}))
