"""MuJoCo Go2 + MoRE policy + low-level controller, the robot replaced at the DDS boundary.

    ros2 launch more_bringup sim.launch.py task:=go_to seed:=3 checkpoint:=/path/to/ckpt
    ros2 topic pub --once /instruction \\
        std_msgs/msg/String "{data: 'go to the red ball'}"

controller_node is a managed (lifecycle) node; by default it configures and activates itself
(autostart). With autostart:=false it waits unconfigured for a lifecycle manager or for
    ros2 lifecycle set /controller_node configure   # connects DDS
    ros2 lifecycle set /controller_node activate    # stands up, streams rt/lowcmd
    ros2 lifecycle set /controller_node deactivate  # damps the motors
Parameters: config/sim.yaml (the same file `more run sim` reads on pip-only machines).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("more_bringup"), "config", "sim.yaml"])
    checkpoint = LaunchConfiguration("checkpoint")
    quantization = LaunchConfiguration("quantization")
    task = LaunchConfiguration("task")
    seed = LaunchConfiguration("seed")
    # The sim publishes /clock; with use_sim_time:=true every node (the sim too, which stamps
    # its messages with its own clock) runs on simulated time. Default false (config/sim.yaml
    # says why).
    sim_time = {"use_sim_time": LaunchConfiguration("use_sim_time")}
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", default_value="random-small",
                              description="MoRE checkpoint directory or random-tiny/random-small"),
        DeclareLaunchArgument("quantization", default_value="none",
                              description="backbone quantization: none | int8 | nf4"),
        DeclareLaunchArgument("task", default_value="go_to", description="simulated task"),
        DeclareLaunchArgument("seed", default_value="0", description="scene seed"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true: every node runs on the sim's /clock; false: "
                              "wall time"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="false: controller_node waits for lifecycle "
                              "transitions (ros2 lifecycle set) before it drives the motors"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="ROS namespace of every node (e.g. robot1); the YAML "
                              "sections are /**/<node>, so parameters apply in any namespace"),
        # Scoped: the namespace applies to these nodes only, not to an including launch file.
        GroupAction([
            PushRosNamespace(LaunchConfiguration("namespace")),
            Node(package="more_policy", executable="go2_sim_node", name="go2_sim_node",
                 output="screen", parameters=[config, {"task": task, "seed": seed}, sim_time]),
            Node(package="more_policy", executable="controller_node", name="controller_node",
                 output="screen",
                 parameters=[config, {"autostart": LaunchConfiguration("autostart")}, sim_time]),
            Node(package="more_policy", executable="policy_node", name="policy_node",
                 output="screen",
                 parameters=[config, {"checkpoint": checkpoint, "quantization": quantization},
                             sim_time]),
        ]),
    ])
