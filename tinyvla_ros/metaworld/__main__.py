"""``python -m tinyvla_ros.metaworld``: the ``tinyvla-metaworld`` command."""

import sys

from tinyvla_ros.metaworld.cli import main

sys.exit(main())
