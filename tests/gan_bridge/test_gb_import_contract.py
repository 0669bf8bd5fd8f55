"""The import arrows of the project: morph3d never imports gan_bridge; gan_bridge.networks never imports
morph3d; gan_bridge reaches morph3d only through its public packages (no private ``_`` modules)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by a Python file."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _violations(package: str, forbidden) -> list[str]:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name in _imports(path):
            if forbidden(name):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    return bad


def test_morph3d_never_imports_gan_bridge():
    assert _violations("morph3d", lambda n: n.split(".")[0] == "gan_bridge") == []


def test_networks_never_import_morph3d():
    assert _violations("gan_bridge/networks", lambda n: n.split(".")[0] == "morph3d") == []


def test_gan_bridge_uses_only_public_morph3d_modules():
    def private(name):
        parts = name.split(".")
        return parts[0] == "morph3d" and any(p.startswith("_") for p in parts[1:])
    assert _violations("gan_bridge", private) == []


def test_checker_sees_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import morph3d.model\nfrom gan_bridge.networks import x\nfrom . import y\n")
    assert _imports(f) == ["morph3d.model", "gan_bridge.networks"]
