"""The robot stack: RealSense camera + MoRE policy + low-level controller on a Unitree Go2.

    ros2 launch more_bringup go2.launch.py checkpoint:=/path/to/ckpt network_interface:=eth0
    ros2 topic pub --once /instruction \\
        std_msgs/msg/String "{data: 'go to the red ball'}"

Release the Go2's sport mode first (Unitree app) and keep the e-stop at hand. camera_node
publishes realsense-ros topic names, so the official realsense2_camera driver can replace it
(launch it yourself and pass use_camera_node:=false).

controller_node is a managed (lifecycle) node; by default it configures and activates itself
(autostart). With autostart:=false it waits unconfigured for a lifecycle manager or for
    ros2 lifecycle set /controller_node configure   # connects DDS, releases sport mode
    ros2 lifecycle set /controller_node activate    # stands up, streams rt/lowcmd
    ros2 lifecycle set /controller_node deactivate  # damps the motors
Parameters: config/go2.yaml (also read by `more run go2`).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("more_bringup"), "config", "go2.yaml"])
    checkpoint = LaunchConfiguration("checkpoint")
    quantization = LaunchConfiguration("quantization")
    network_interface = LaunchConfiguration("network_interface")
    use_camera_node = LaunchConfiguration("use_camera_node")
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", description="MoRE checkpoint directory"),
        DeclareLaunchArgument("quantization", default_value="nf4",
                              description="backbone quantization: none | int8 | nf4"),
        DeclareLaunchArgument("network_interface", default_value="eth0",
                              description="network interface wired to the Go2"),
        DeclareLaunchArgument("use_camera_node", default_value="true",
                              description="false: a realsense2_camera driver you start yourself"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: controller_node waits for lifecycle "
                              "transitions (ros2 lifecycle set) before it drives the motors"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="ROS namespace of every node (e.g. robot1); the YAML "
                              "sections are /**/<node>, so parameters apply in any namespace"),
        # Scoped: the namespace applies to these nodes only, not to an including launch file.
        GroupAction([
            PushRosNamespace(LaunchConfiguration("namespace")),
            Node(package="more_policy", executable="camera_node", name="camera_node",
                 output="screen", parameters=[config],
                 condition=IfCondition(use_camera_node)),
            Node(package="more_policy", executable="controller_node", name="controller_node",
                 output="screen",
                 parameters=[config, {"network_interface": network_interface,
                                      "action_space": checkpoint,  # the policy's ranges
                                      "autostart": LaunchConfiguration("autostart")}]),
            Node(package="more_policy", executable="policy_node", name="policy_node",
                 output="screen",
                 parameters=[config, {"checkpoint": checkpoint, "quantization": quantization}]),
        ]),
    ])
