import sys

import pytest

from rscovlm._optional import MissingDependencyError, available, require


def test_missing_module_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tifffile", None)  # as if not installed
    assert not available("tifffile")
    with pytest.raises(MissingDependencyError) as info:
        require("tifffile", "geo", "writing a tiled TIFF")
    msg = str(info.value)
    assert msg == ("writing a tiled TIFF needs the package 'tifffile', which is not installed: "
                   "pip install 'rscovlm[geo]'")
    assert isinstance(info.value, ImportError) and info.value.extra == "geo"


def test_an_import_error_inside_an_installed_package_is_not_disguised(tmp_path, monkeypatch):
    (tmp_path / "rscovlm_broken_pkg.py").write_text("import rscovlm_missing_inner_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert available("rscovlm_broken_pkg")
    with pytest.raises(ModuleNotFoundError) as info:
        require("rscovlm_broken_pkg", "geo")
    assert not isinstance(info.value, MissingDependencyError) and info.value.name == "rscovlm_missing_inner_dep"


def test_present_module_is_returned():
    assert require("json", "geo").dumps([1]) == "[1]" and available("json") and not available("rscovlm_nope_x")
