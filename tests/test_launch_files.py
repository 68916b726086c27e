"""Static check of more_bringup's launch files and parameter YAML (no `launch` package here).

Every Node(...) the launch files start must be an entry point of its package, every parameter
file they pass must exist and be installed, every parameter they or the YAML set must be
declared by the node (with a matching type), and the container runner must start the same
nodes from the same files.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from more_policy.nodes.runner import NODE_CLASSES, STACKS

REPO = Path(__file__).resolve().parents[1]
BRINGUP = REPO / "more_bringup"
LAUNCH_FILES = sorted((BRINGUP / "launch").glob("*.launch.py"))
ROS_PARAMETERS = {"use_sim_time"}  # declared by every rclpy node itself


def console_scripts(setup_py: Path) -> dict[str, str]:
    """{'name': 'module:function'} from a setup.py's entry_points literal."""
    for node in ast.walk(ast.parse(setup_py.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entries = ast.literal_eval(node.value)["console_scripts"]
            return dict((part.strip() for part in e.split("=", 1)) for e in entries)
    raise AssertionError(f"{setup_py} has no entry_points")


def _string(node: ast.AST, assignments: dict[str, ast.AST]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in assignments:
        return _string(assignments[node.id], assignments)
    return None


def _config_file(node: ast.AST, assignments: dict[str, ast.AST]) -> str | None:
    """PathJoinSubstitution([FindPackageShare('more_bringup'), 'config', 'x.yaml']) -> x.yaml"""
    if isinstance(node, ast.Name) and node.id in assignments:
        return _config_file(assignments[node.id], assignments)
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "PathJoinSubstitution":
        parts = node.args[0].elts
        assert getattr(parts[0].func, "id", "") == "FindPackageShare"
        assert parts[0].args[0].value == "more_bringup"
        assert parts[1].value == "config"
        return parts[2].value
    return None


def launch_nodes(path: Path) -> tuple[list[dict], set[str], set[str]]:
    """Node(...) calls of a launch file: package, executable, name, param files, override keys;
    plus the launch arguments it declares and the ones it reads."""
    tree = ast.parse(path.read_text())
    assignments = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
    nodes, declared, used = [], set(), set()
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        func = getattr(call.func, "id", "")
        if func == "DeclareLaunchArgument":
            declared.add(call.args[0].value)
        elif func == "LaunchConfiguration":
            used.add(call.args[0].value)
        elif func == "Node":
            kw = {k.arg: k.value for k in call.keywords}
            files, overrides = [], set()
            for item in kw["parameters"].elts if "parameters" in kw else []:
                if isinstance(item, ast.Name) and isinstance(assignments.get(item.id), ast.Dict):
                    item = assignments[item.id]
                if isinstance(item, ast.Dict):
                    overrides |= {k.value for k in item.keys}
                else:
                    files.append(_config_file(item, assignments))
            nodes.append({"package": _string(kw["package"], assignments),
                          "executable": _string(kw["executable"], assignments),
                          "name": _string(kw["name"], assignments),
                          "files": files, "overrides": overrides})
    return nodes, declared, used


def node_parameters(node_name: str) -> dict:
    """{parameter: default} a node class declares (its module's PARAMETERS table)."""
    module = importlib.import_module(NODE_CLASSES[node_name].split(":")[0])
    return {spec.name: spec.default for spec in module.PARAMETERS}


def test_launch_files_exist_and_compile():
    assert {p.name for p in LAUNCH_FILES} == {s.launch_file for s in STACKS.values()}
    for path in LAUNCH_FILES:
        tree = ast.parse(path.read_text())
        compile(tree, str(path), "exec")
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "generate_launch_description" in functions, path.name


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_launch_argument_is_declared(path):
    _, declared, used = launch_nodes(path)
    assert used <= declared, f"{path.name} reads undeclared launch arguments {used - declared}"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_executable_is_an_entry_point(path):
    scripts = console_scripts(REPO / "more_policy" / "setup.py")
    for node in launch_nodes(path)[0]:
        assert node["package"] == "more_policy", node
        target = scripts.get(node["executable"])
        assert target, f"{path.name}: {node['executable']} is not a more_policy console_script"
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))
        # the executable runs the node class the runner uses under the same name
        assert module == NODE_CLASSES[node["name"]].split(":")[0]


@pytest.mark.parametrize("stack_name", sorted(STACKS))
def test_parameter_files_exist_are_installed_and_declared(stack_name):
    stack = STACKS[stack_name]
    nodes, _, _ = launch_nodes(BRINGUP / "launch" / stack.launch_file)
    # the container runner starts the same nodes from the same file as the launch file
    assert [n["name"] for n in nodes] == list(stack.nodes)
    installed = console_data_files(BRINGUP / "setup.py")
    for node in nodes:
        assert node["files"] == [stack.config_file], node
        config = BRINGUP / "config" / stack.config_file
        assert config.is_file() and "config/*.yaml" in installed
        declared = node_parameters(node["name"])
        undeclared = node["overrides"] - set(declared) - ROS_PARAMETERS
        assert not undeclared, f"{stack.launch_file} sets undeclared {undeclared}"
    sections = yaml.safe_load((BRINGUP / "config" / stack.config_file).read_text())
    # /**/<node>: the parameters apply whatever namespace the launch file puts the node in
    assert set(sections) == {f"/**/{name}" for name in stack.nodes}, \
        "one YAML section per node of the stack, namespace-independent"
    sections = {key.removeprefix("/**/"): section for key, section in sections.items()}
    for node_name, section in sections.items():
        declared = node_parameters(node_name)
        for key, value in section["ros__parameters"].items():
            if key in ROS_PARAMETERS:
                assert isinstance(value, bool), f"{stack.config_file}: {node_name}.{key}"
                continue
            assert key in declared, f"{stack.config_file}: {node_name} does not declare {key}"
            # ROS parameters are typed by their default: a YAML 5 for a float would be refused
            assert type(value) is type(declared[key]), \
                f"{stack.config_file}: {node_name}.{key}={value!r} but the default is " \
                f"{declared[key]!r}"


def launch_argument_default(path: Path, name: str) -> str | None:
    """default_value of DeclareLaunchArgument(name, ...) in a launch file (None: not declared)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"
                and ast.literal_eval(node.args[0]) == name):
            return next(ast.literal_eval(k.value) for k in node.keywords
                        if k.arg == "default_value")
    return None


def test_every_stack_defaults_to_wall_time_and_the_sim_offers_sim_time():
    """use_sim_time: ROS's default (false, wall time) in every launch file and YAML (which
    `more run sim` reads); sim.launch.py declares the argument to opt in to the sim's /clock."""
    for name, stack in STACKS.items():
        launch = BRINGUP / "launch" / stack.launch_file
        sections = yaml.safe_load((BRINGUP / "config" / stack.config_file).read_text())
        sim_time = {node: section["ros__parameters"].get("use_sim_time", False)
                    for node, section in sections.items()}
        assert not any(sim_time.values()), sim_time
        if name == "sim":
            assert launch_argument_default(launch, "use_sim_time") == "false"
        else:
            assert launch_argument_default(launch, "use_sim_time") in (None, "false")


def console_data_files(setup_py: Path) -> str:
    """The data_files globs of more_bringup's setup.py, as source text."""
    for node in ast.walk(ast.parse(setup_py.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "data_files":
            return ast.unparse(node.value)
    raise AssertionError("more_bringup/setup.py installs no data_files")


def test_every_node_declares_its_parameter_table():
    """The tables the checks above read are what the nodes declare (declare_parameters)."""
    for target in NODE_CLASSES.values():
        module_name, class_name = target.split(":")
        module = importlib.import_module(module_name)
        tree = ast.parse(Path(module.__file__).read_text())
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
        calls = [ast.unparse(n) for n in ast.walk(cls) if isinstance(n, ast.Call)]
        assert "declare_parameters(self, PARAMETERS)" in calls, target
        names = [spec.name for spec in module.PARAMETERS]
        assert len(names) == len(set(names)), f"{target}: duplicate parameter names"
        assert all(spec.description for spec in module.PARAMETERS), target
