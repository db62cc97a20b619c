"""Scans in the real app (issue 19), driven by headless Chromium as tests/test_app_browser.py
does: a citation of a scanned PDF shows its page with the cited text in yellow, and an
upload of a scan shows its OCR progress page by page.

The app serves an index it builds at start from a scanned notice (an image-only PDF
made here) and one text file. Screenshots go to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import running_app

sync_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("RAG_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
SHOTS = REPO / "artifacts" / "screenshots"
ANSWER_MS = 90_000
UPLOAD_MS = 300_000  # two pages read twice by OCR on a busy 2-core machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.skipif(not FONT.is_file(), reason="fonts-wqy-microhei is not installed"),
]

NOTICE = [
    ["青岛市住房和城乡建设局", "关于开展老旧小区改造申报工作的通知", "各区住建部门："],
    ["2024年全市计划改造老旧小区350个。", "申报截止日期为2024年3月15日。", "2024年1月8日"],
]
MINUTES = [
    ["青岚湖治理工作会议纪要", "会议由市生态环境局主持。"],
    ["青岚湖水质监测站共设有17个监测点位。", "下次会议定于五月召开。"],
]


def scan_pdf(path: Path, pages: list[list[str]]) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), 34)
    images = []
    for lines in pages:
        img = Image.new("RGB", (1100, 500), "white")
        draw = ImageDraw.Draw(img)
        for i, line in enumerate(lines):
            draw.text((90, 100 + 90 * i), line, font=font, fill="black")
        images.append(img)
    images[0].save(path, "PDF", resolution=200.0, save_all=True, append_images=images[1:])
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans-app")
    corpus = root / "corpus"
    corpus.mkdir()
    scan_pdf(corpus / "notice.pdf", NOTICE)
    (corpus / "note.txt").write_text("威海市召开城市更新大会，部署全年工作。", encoding="utf-8")
    args = ["--index", str(root / "data" / "index"), "--corpus", str(corpus),
            "--feedback", str(root / "feedback.jsonl")]  # fmt: skip
    with running_app(args, root / "app.log") as app:
        yield app, root


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="rag-chromium-")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 1000}, locale="zh-CN",
        )  # fmt: skip
        yield ctx
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, server):
    app, _ = server
    pg = browser.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(app.url)
    pg.wait_for_selector("#rag-question textarea")
    yield pg
    pg.close()


# Counts, in the browser, the pixels of the shown page image that are yellow-ish: the
# marks as the user sees them, not as the server meant them.
YELLOW_PIXELS = """img => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const r = d[i], gr = d[i + 1], b = d[i + 2];
    if (r > 200 && gr > 170 && b < 200 && r - b > 60) n++;
  }
  return {n, w: c.width, h: c.height};
}"""


def test_a_scanned_citation_opens_its_page_with_the_text_marked(page):
    box = page.locator("#rag-question textarea")
    box.fill("2024年全市计划改造多少个老旧小区？")
    box.press("Enter")
    page.wait_for_selector("#rag-chat .rag-answer:not(.rag-streaming) .rag-card", timeout=ANSWER_MS)
    card = page.locator("#rag-chat .rag-card").first
    assert "第2页" in card.locator(".rag-meta").inner_text()
    assert page.locator("#rag-page").is_hidden()  # nothing to show before a click
    card.click()
    img = page.locator("#rag-page img")
    img.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=img.element_handle())
    label = page.locator("#rag-page").inner_text()
    assert "第2页（共2页）" in label and "扫描件" in label, label
    got = img.evaluate(YELLOW_PIXELS)
    # 1100 px at 200 dpi shown at 110 dpi: 605 px wide; a marked line is thousands of pixels
    assert abs(got["w"] - 605) <= 1, got
    assert got["n"] > 2000, got
    page.locator("#rag-page").screenshot(path=str(SHOTS / "scan_cited_page.png"))
    # the text view beside it still shows the passage
    assert "350" in page.locator("#rag-viewer .rag-target").inner_text()

    page.locator("#rag-new-chat").click()  # a new chat hides the page again
    page.locator("#rag-page").wait_for(state="hidden")


def test_an_uploaded_scan_shows_ocr_progress_page_by_page(page, server, tmp_path):
    _, root = server
    path = scan_pdf(tmp_path / "会议纪要.pdf", MINUTES)
    page.get_by_role("tab", name="知识库").click()
    page.evaluate(
        """() => {
        window.__ocrProgress = [];
        new MutationObserver(() => {
          const m = document.body.innerText.match(/(正在识别扫描件|再次识别)《会议纪要\\.pdf》：第\\d\\/2页/g);
          if (m) for (const s of m) if (!window.__ocrProgress.includes(s)) window.__ocrProgress.push(s);
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }"""
    )
    page.locator("#rag-upload input[type=file]").set_input_files(str(path))
    page.wait_for_selector("#rag-upload-result .rag-result", timeout=UPLOAD_MS)
    seen = page.evaluate("window.__ocrProgress")
    # gradio sends the latest progress at its own pace, so not every page need be shown;
    # each one reported reaches tests/test_ocr_progress.py's progress callback
    assert seen and any(s.startswith("正在识别扫描件《会议纪要.pdf》：第") for s in seen), seen
    assert "已添加" in page.locator("#rag-upload-result .rag-result").first.inner_text()
