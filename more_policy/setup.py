"""more_policy: the MoRE library and ROS 2 nodes (ament_python package, pip-installable)."""


from setuptools import find_packages, setup

package_name = "more_policy"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    package_data={package_name: ["sim/assets/*", "py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["numpy", "setuptools"],
    zip_safe=False,
    maintainer="MoRE-Go2 developers",
    maintainer_email="more-go2@example.org",
    description="MoRE vision-language-action policy for the Unitree Go2: model, RL, sim, nodes.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "more = more_policy.cli:main",
            "policy_node = more_policy.nodes.policy_node:main",
            "controller_node = more_policy.nodes.controller_node:main",
            "go2_sim_node = more_policy.nodes.go2_sim_node:main",
            "camera_node = more_policy.nodes.camera_node:main",
        ],
    },
)
