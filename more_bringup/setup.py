"""more_bringup: launch files and parameter files (ament_python package)."""

from glob import glob

from setuptools import setup

package_name = "more_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="MoRE-Go2 developers",
    maintainer_email="more-go2@example.org",
    description="Launch files and parameters for the MoRE-Go2 robot and simulation stacks.",
    license="Apache-2.0",
)
