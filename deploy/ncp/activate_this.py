"""Put the bundled site-packages on sys.path; the OpenWhisk Python launcher runs this file if it exists."""

import os
import site
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
site.addsitedir(os.path.join(_root, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages"))
