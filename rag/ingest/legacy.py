"""Older office formats (.doc, .wps, .xls, .ppt), converted by LibreOffice when it is
installed: `soffice --headless --convert-to`, in a scratch folder, time-limited."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rag.ingest.formats import _Unreadable

CONVERT_TIMEOUT_S = 120
_TARGET = {"doc": "docx", "xls": "xlsx", "ppt": "pptx"}
_SAVE_AS = {"doc": "Word 或 WPS", "xls": "Excel 或 WPS 表格", "ppt": "PowerPoint 或 WPS 演示"}


def soffice() -> str | None:
    """The LibreOffice command, when one is on the PATH."""
    return shutil.which("soffice") or shutil.which("libreoffice")


def convert_legacy(data: bytes, path: Path, fmt: str) -> bytes:
    """`data` (a file of the old format `fmt`) converted to its modern format's bytes."""
    target = _TARGET[fmt]
    save_as = f"请在{_SAVE_AS[fmt]}中打开，另存为 .{target} 后再上传"
    exe = soffice()
    if exe is None:
        raise _Unreadable(
            f"{path.suffix} 是旧版格式，需要 LibreOffice 才能读取，而本机没有安装；"
            f"请在{_SAVE_AS[fmt]}中另存为 .{target} 后再上传，或请管理员安装 LibreOffice"
        )
    with tempfile.TemporaryDirectory(prefix="rag-convert-") as tmp:
        src = Path(tmp) / f"input{path.suffix.lower()}"
        src.write_bytes(data)
        env = {**os.environ, "HOME": tmp}  # a profile of its own: no clash with a running one
        try:
            subprocess.run(
                [
                    exe,
                    "--headless",
                    "--norestore",
                    "--convert-to",
                    target,
                    "--outdir",
                    tmp,
                    str(src),
                ],
                check=True,
                capture_output=True,
                timeout=CONVERT_TIMEOUT_S,
                env=env,
            )
        except subprocess.TimeoutExpired:
            raise _Unreadable(
                f"LibreOffice 转换超过 {CONVERT_TIMEOUT_S} 秒仍未完成：{save_as}"
            ) from None
        except (subprocess.CalledProcessError, OSError) as e:
            raise _Unreadable(
                f"LibreOffice 无法转换这个文件：{save_as}（{type(e).__name__}）"
            ) from None
        out = src.with_suffix(f".{target}")
        if not out.is_file():
            raise _Unreadable(f"LibreOffice 没有转换出文件，文件可能已损坏或加密：{save_as}")
        return out.read_bytes()
