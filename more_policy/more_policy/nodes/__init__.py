"""Thin rclpy nodes over the library (policy, controller, go2 sim, camera), the container runner
(`more run`), and rosbag2 tools (record, `more eval-bag`, `more replay-bag`)."""
