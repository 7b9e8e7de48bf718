"""ament_python package definition of tinyvla_ros (works with colcon and with pip)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "tinyvla_ros"
HERE = Path(__file__).resolve().parent


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries that install ``folder`` recursively under share/<package>/."""
    entries: dict[str, list[str]] = {}
    for path in sorted((HERE / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(HERE)
            entries.setdefault(f"share/{PACKAGE}/{rel.parent.as_posix()}", []).append(rel.as_posix())
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["sim/assets/*.xml", "sim/assets/**/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        *tree("config"),
        *tree("models"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="tinyvla_ros maintainers",
    maintainer_email="maintainers@tinyvla-ros.invalid",
    description="TinyVLA vision-language-action model in a ROS 2 control loop",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            # user commands
            "tinyvla-model = tinyvla_ros.vla.cli:main",
            "tinyvla-export = tinyvla_ros.vla.export:main",
            "tinyvla-graph = tinyvla_ros.ros.graph:main",
            "tinyvla-demo = tinyvla_ros.demo:main",
            "tinyvla-record-demos = tinyvla_ros.data.demos:main",
            "tinyvla-convert = tinyvla_ros.data.convert:main",
            "tinyvla-import = tinyvla_ros.data.importers:main",
            "tinyvla-train = tinyvla_ros.data.train:main",
            "tinyvla-eval = tinyvla_ros.data.evaluate:main",
            "tinyvla-probe = tinyvla_ros.data.probe:main",
            "tinyvla-diagnose = tinyvla_ros.data.diagnose:main",
            "tinyvla-metaworld = tinyvla_ros.metaworld.cli:main",
            "tinyvla-graph-eval = tinyvla_ros.ros.graph_eval:main",
            "tinyvla-bag-record = tinyvla_ros.ros.bag_record:main",
            "tinyvla-bag-play = tinyvla_ros.ros.bag_play:main",
            # ROS 2 node executables (launch_ros `executable=`, `ros2 run tinyvla_ros <name>`)
            "tinyvla_policy_node = tinyvla_ros.ros.policy_node:main",
            "tinyvla_executor_node = tinyvla_ros.ros.executor_node:main",
            "tinyvla_fake_robot_node = tinyvla_ros.ros.fake_robot_node:main",
            "tinyvla_synthetic_sensors = tinyvla_ros.ros.synthetic_sensors:main",
            "tinyvla_realsense_node = tinyvla_ros.ros.cameras.realsense_node:main",
            "tinyvla_zed_node = tinyvla_ros.ros.cameras.zed_node:main",
            "tinyvla_bag_record = tinyvla_ros.ros.bag_record:main",
            "tinyvla_bag_play = tinyvla_ros.ros.bag_play:main",
        ],
    },
)
