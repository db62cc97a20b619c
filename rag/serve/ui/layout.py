"""The gradio Blocks page: components and the wiring of their events to the handlers."""

from collections.abc import Sequence
from pathlib import Path

from rag.errors import ForbiddenError, RagError
from rag.serve.limits import RateLimiter, upload_limiter
from rag.serve.public import public_error
from rag.serve.ui.access import UiAccess, export_dir
from rag.serve.ui.admin import RECENT_HEADERS, USER_HEADERS, admin_panel
from rag.serve.ui.handlers import ChatState, generator_label
from rag.serve.ui.library import DOC_HEADERS, Library, pick_labels
from rag.serve.ui.progress import upload_progress
from rag.serve.ui.render import (
    UI_STRINGS,
    VIEWER_EMPTY,
    VIEWER_JS,
    esc,
    render_remove_confirm,
    render_results,
)


def ui_i18n():
    """Gradio's own strings (the chat's button tooltips) in Chinese, whatever the
    browser's language: passed to `launch` / `mount_gradio_app`."""
    import gradio as gr

    return gr.I18n(**{locale: dict(UI_STRINGS) for locale in ("en", "zh-CN", "zh-TW", "zh")})


NO_LOGIN_NOTE = "未登录：对话只保留在本页，刷新页面后会清空。登录后对话会自动保存，可在这里继续。"


def _info_markdown(library: Library, state: ChatState | None) -> str:
    if state is not None and state.access is not None and state.access.has_kbs:
        library = state.library
        if not state.kbs:
            return "还没有可以提问的知识库，请联系管理员授权。"
    i = library.info()
    s = state.settings if state else library.settings
    name = state.generator_label() if state else generator_label(library.settings)
    # no server paths here: every user sees this line
    return (
        f"**嵌入模型**：`{i['embed_model']}`（{i['dim']} 维）  \n"
        f"**索引**：版本 `{i['version']}`，{i['n_docs']} 篇文档，"
        f"{i['n_chunks']} 个片段，向量检索 {i['vector_index']}  \n"
        f"**本会话**：生成方式 {name}，top-k {s.top_k}"
    )


def build_app(
    library: Library,
    examples: Sequence[str],
    uploads: RateLimiter | None = None,
    access: UiAccess | None = None,
    logout: bool = False,
):
    """Lay out the app and wire its events; returns a `gr.Blocks` (not launched).

    `uploads` limits each user's (login name, else address) uploads; the upload route in
    front of the handler is limited by `rag.serve.limits.UploadRouteLimit`. `access`
    (rag.serve.ui.access) says what each login may read and change: over a home's
    knowledge bases, nothing is put in the page before the login is known (every list is
    filled on load, for that caller); without it, `library` is the one bare index.
    `logout` shows a logout button (when the app has a login).
    """
    import gradio as gr

    from rag.ingest.loaders import SUPPORTED

    base = library.settings
    uploads = uploads or upload_limiter(base)
    home = access is not None and access.has_kbs  # a home's knowledge bases, each its readers'

    def new_state() -> ChatState:
        return ChatState(library, base, access=access)

    def caller_of(request):
        """Who sent `request`: its login name as Gradio's session says, never the page's
        state (a client can call a handler without ever loading the page)."""
        return access.caller(getattr(request, "username", None)) if access else None

    def kb_entry(request, kb, edit: bool = False):
        """(name, library) of knowledge base `kb` as the request's caller may use it
        (raises otherwise); without `access`, the one library."""
        if access is None:
            return "default", library
        entry = access.service.knowledge_base(kb or None, caller_of(request), edit=edit)
        return entry.name, entry.library

    def kb_library(request, kb, edit: bool = False):
        return kb_entry(request, kb, edit)[1]

    def doc_table(lib=None):
        return [r.shown() for r in (lib or library).documents()]

    def doc_choices(lib=None):
        return pick_labels((lib or library).documents())

    if home:  # nothing of any knowledge base before the login is known
        examples = []

    # every hour, drop Gradio's copies of uploads older than a day (they are indexed by then)
    # Gradio's temporary copies of uploads (also of files posted straight to its upload
    # route) are deleted after `upload_temp_keep_s`, not kept for a day
    keep = max(1, base.upload_temp_keep_s)
    with gr.Blocks(title="文档问答", delete_cache=(min(keep, 60), keep)) as demo:
        state = gr.State(None)
        with gr.Sidebar(label="我的对话", open=False, elem_id="rag-history"):
            history_note = gr.Markdown(NO_LOGIN_NOTE, elem_id="rag-history-note")
            history_pick = gr.Radio(
                choices=[], label="我的对话", elem_id="rag-history-pick", visible=False
            )
            with gr.Column(visible=False, elem_id="rag-history-tools") as history_tools:
                history_title = gr.Textbox(
                    label="新标题", placeholder="为所选对话输入新标题", elem_id="rag-history-title"
                )
                with gr.Row():
                    rename_btn = gr.Button("重命名", size="sm", elem_id="rag-history-rename")
                    export_btn = gr.Button("导出", size="sm", elem_id="rag-history-export-btn")
                    delete_btn = gr.Button(
                        "删除", size="sm", variant="stop", elem_id="rag-history-delete"
                    )
                with gr.Group(visible=False, elem_id="rag-history-confirm") as hist_confirm:
                    hist_confirm_text = gr.Markdown(elem_id="rag-history-confirm-text")
                    with gr.Row():
                        hist_yes = gr.Button("确认删除", variant="stop", elem_id="rag-history-yes")
                        hist_no = gr.Button("取消", elem_id="rag-history-no")
                history_file = gr.File(
                    label="导出的对话（Markdown，含引用）",
                    visible=False,
                    interactive=False,
                    elem_id="rag-history-export",
                )
                history_status = gr.Markdown(elem_id="rag-history-status")
        with gr.Row(equal_height=False, elem_id="rag-top"):
            gr.Markdown(
                "## 文档问答\n基于知识库中的文档回答问题，每个回答都标明出处 [n]；点击引用可查看原文。",
                elem_id="rag-header",
            )
            logout_btn = gr.Button(
                "退出登录", link="/logout", size="sm", scale=0, min_width=100,
                visible=False, elem_id="rag-logout",
            )  # fmt: skip
        with gr.Tabs():
            with gr.Tab("对话", id="chat", elem_id="rag-tab-chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        kb_choice = gr.Dropdown(
                            choices=[],
                            multiselect=True,
                            label="提问的知识库（可多选）",
                            elem_id="rag-kbs",
                            visible=home,
                        )
                        kb_status = gr.Markdown(elem_id="rag-kbs-status", visible=home)
                        chatbot = gr.Chatbot(
                            label="对话",
                            show_label=False,  # its floating label covered the first message
                            elem_id="rag-chat",
                            height=600,
                            examples=[{"text": q} for q in examples],
                            placeholder="**向知识库提问**<br>可以试试下面的示例问题。",
                            feedback_options=("Like", "Dislike"),
                            latex_delimiters=[],
                            buttons=["copy"],
                        )
                        with gr.Row():
                            question = gr.Textbox(
                                label="问题",  # read out by screen readers ("Textbox" otherwise)
                                show_label=False,
                                placeholder="输入问题，按回车发送",
                                elem_id="rag-question",
                                scale=8,
                                lines=1,
                                max_lines=4,
                                autofocus=True,
                            )
                            send = gr.Button(
                                "发送", variant="primary", scale=1, min_width=80, elem_id="rag-send"
                            )
                            new_chat = gr.Button(
                                "新对话", scale=1, min_width=80, elem_id="rag-new-chat"
                            )
                        with gr.Accordion("检索范围（公文）", open=False, elem_id="rag-scope"):
                            scopes = {"issuer": [], "doc_number": []} if home else library.scopes()
                            with gr.Row():
                                scope_issuer = gr.Dropdown(
                                    choices=[""] + scopes["issuer"],
                                    value="",
                                    label="发文机关",
                                    allow_custom_value=True,
                                    elem_id="rag-scope-issuer",
                                )
                                scope_number = gr.Dropdown(
                                    choices=[""] + scopes["doc_number"],
                                    value="",
                                    label="发文字号",
                                    allow_custom_value=True,
                                    elem_id="rag-scope-number",
                                )
                            scope_status = gr.Markdown(
                                "检索范围：全部文档。", elem_id="rag-scope-status"
                            )
                        with gr.Row(visible=False, elem_id="rag-feedback-row") as fb_row:
                            fb_comment = gr.Textbox(
                                label="补充说明（可选）", elem_id="rag-feedback-comment", scale=5
                            )
                            fb_send = gr.Button("提交说明", elem_id="rag-feedback-send", scale=1)
                        fb_status = gr.Markdown(elem_id="rag-feedback-status")
                    with gr.Column(scale=2):
                        viewer = gr.HTML(
                            VIEWER_EMPTY,
                            label="原文",
                            show_label=True,
                            container=True,
                            js_on_load=VIEWER_JS,
                            elem_id="rag-viewer",
                            max_height=640,
                        )
                        page_image = gr.Image(
                            label="原页",
                            visible=False,
                            interactive=False,
                            type="pil",
                            format="png",
                            elem_id="rag-page",
                        )
            with gr.Tab("知识库", id="kb", elem_id="rag-tab-kb"):
                kb_pick = gr.Dropdown(  # one bare index: `default`, the only one
                    choices=[] if home else ["default"],
                    value=None if home else "default",
                    label="知识库",
                    elem_id="rag-kb-pick",
                    visible=home,
                )
                gr.Markdown("### 文档列表")
                docs = gr.Dataframe(
                    value=[] if home else doc_table(),
                    headers=DOC_HEADERS,
                    interactive=False,
                    wrap=True,
                    elem_id="rag-docs",
                    label="已入库文档",
                )
                refresh = gr.Button("刷新列表", size="sm", elem_id="rag-refresh")
                readonly = gr.Markdown(
                    "您对这个知识库只有提问权限；上传或删除文档请联系它的编辑或管理员。",
                    visible=False,
                    elem_id="rag-kb-readonly",
                )
                # only for an editor of the chosen knowledge base (the handlers check too)
                with gr.Column(visible=not home, elem_id="rag-kb-edit") as edit_box:
                    gr.Markdown(
                        "### 上传文档\n支持的格式："
                        + "、".join(sorted(SUPPORTED))
                        + f"；单个文件不超过 {base.max_file_mb:g} MB。上传后自动入库。"
                    )
                    upload = gr.File(
                        label="上传文件（可多选）",
                        file_count="multiple",
                        file_types=sorted(SUPPORTED),
                        elem_id="rag-upload",
                    )
                    upload_result = gr.HTML(elem_id="rag-upload-result")
                    gr.Markdown("### 删除文档")
                    remove_pick = gr.Dropdown(
                        choices=[] if home else doc_choices(),
                        multiselect=True,
                        label="选择要删除的文档",
                        elem_id="rag-remove-pick",
                    )
                    remove_btn = gr.Button("删除所选文档", variant="stop", elem_id="rag-remove")
                    with gr.Group(visible=False, elem_id="rag-remove-confirm") as confirm_box:
                        confirm_text = gr.HTML(elem_id="rag-remove-confirm-text")
                        with gr.Row():
                            confirm_yes = gr.Button(
                                "确认删除", variant="stop", elem_id="rag-remove-yes", scale=1
                            )
                            confirm_no = gr.Button("取消", elem_id="rag-remove-no", scale=1)
                    remove_result = gr.HTML(elem_id="rag-remove-result")
            with gr.Tab("设置", id="settings", elem_id="rag-tab-settings"):
                gr.Markdown("设置只对当前浏览器会话生效，不影响其他用户。")
                gr.Markdown(
                    "生成方式由管理员在配置文件中设定（`[generators.名称]`），这里只能选择。"
                )
                gen = gr.Dropdown(
                    choices=base.generator_choices(),
                    value=base.current_generator(),
                    label="生成方式",
                    elem_id="rag-gen",
                )
                top_k = gr.Slider(
                    1, 20, value=base.top_k, step=1, label="检索段落数（top-k）", elem_id="rag-topk"
                )
                apply = gr.Button("应用设置", variant="primary", elem_id="rag-apply")
                settings_status = gr.Markdown(elem_id="rag-settings-status")
                info = gr.Markdown(
                    "" if home else _info_markdown(library, None), elem_id="rag-info"
                )
            with gr.Tab("管理", id="admin", elem_id="rag-tab-admin", visible=False) as admin_tab:
                gr.Markdown("### 用户与权限")
                admin_users = gr.Dataframe(
                    headers=USER_HEADERS, interactive=False, wrap=True, label="用户与权限",
                    show_label=False, elem_id="rag-admin-users",
                )  # fmt: skip
                gr.Markdown("### 使用情况")
                admin_summary = gr.Markdown(elem_id="rag-admin-summary")
                with gr.Row():
                    admin_per_day = gr.Image(
                        label="每日提问数与拒答率", interactive=False, type="filepath",
                        elem_id="rag-admin-per-day",
                    )  # fmt: skip
                    admin_cited = gr.Image(
                        label="最常被引用的文档", interactive=False, type="filepath",
                        elem_id="rag-admin-cited",
                    )  # fmt: skip
                gr.Markdown("### 最近的提问")
                admin_recent = gr.Dataframe(
                    headers=RECENT_HEADERS, interactive=False, wrap=True, label="最近的提问",
                    show_label=False, elem_id="rag-admin-recent",
                )  # fmt: skip
                admin_refresh = gr.Button("刷新", size="sm", elem_id="rag-admin-refresh")

        # ------------------------------------------------------------------ events
        def history_list(st):
            """The sidebar's list of this user's conversations, the current one chosen."""
            if st is None or not st.user:
                return gr.update(choices=[], value=None, visible=False)
            return gr.update(choices=st.conversations(), value=st.conv_id or None, visible=True)

        def kb_choices(st):
            """The chat's picker and the knowledge-base tab's: only what `st` may read."""
            if not home or st is None:
                return gr.skip(), gr.skip(), gr.skip()
            readable = access.readable(st.caller)
            shown = st.kbs[0] if st.kbs else (readable[0] if readable else None)
            note = st.use_kbs(st.kbs) if st.kbs else "还没有可以提问的知识库，请联系管理员授权。"
            return (
                gr.update(choices=readable, value=list(st.kbs)),
                note,
                gr.update(choices=readable, value=shown),
            )

        def kb_view(kb, request: gr.Request):
            """The documents of knowledge base `kb` and, for its editors, the controls."""
            try:
                name, lib = kb_entry(request, kb)
            except RagError:
                hide = gr.update(visible=False)
                return [], gr.update(choices=[], value=[]), hide, hide
            caller = caller_of(request)
            may_edit = caller is None or caller.may_edit(name)
            return (
                doc_table(lib),
                gr.update(choices=doc_choices(lib) if may_edit else [], value=[]),
                gr.update(visible=may_edit),
                gr.update(visible=not may_edit),
            )

        def on_admin_load(st):
            """The admin tab: shown and filled for an admin only (refused for others here,
            by `admin_panel`, whatever the page asks)."""
            hidden = (gr.update(visible=False), [], "", None, None, [])
            if st is None or not st.user or access is None:
                return hidden
            try:
                view = admin_panel(access, access.caller(st.user), export_dir())
            except ForbiddenError:
                return hidden
            return (gr.update(visible=True), view.users, view.summary, str(view.per_day_png),
                    str(view.cited_png), view.recent)  # fmt: skip

        def on_load(st, request: gr.Request):
            st = st or new_state()
            st.login(getattr(request, "username", None))
            note = NO_LOGIN_NOTE
            if st.user:
                note = f"已登录为 **{esc(st.user)}**：对话自动保存，刷新页面或换一台电脑后可在这里继续。"
                kept = st.conversations()
                if kept and not st.messages:  # a reload: continue the latest conversation
                    try:
                        st.resume(kept[0][1])
                    except RagError:  # its knowledge bases are no longer readable
                        st.reset()
            picker, kb_note, tab_pick = kb_choices(st)
            shown = st.kbs[0] if st.kbs else None
            table, picks, editing, reading = kb_view(shown, request)
            chat = (st.messages, note, history_list(st), gr.update(visible=bool(st.user)))
            return (st, table, picks, _info_markdown(library, st), *scope_choices(st), *chat,
                    picker, kb_note, tab_pick, editing, reading, gr.update(visible=logout))  # fmt: skip

        demo.load(
            on_load,
            [state],
            [state, docs, remove_pick, info, scope_issuer, scope_number]
            + [chatbot, history_note, history_pick, history_tools]
            + [kb_choice, kb_status, kb_pick, edit_box, readonly, logout_btn],
        ).then(on_admin_load, [state], [admin_tab, admin_users, admin_summary, admin_per_day,
                                        admin_cited, admin_recent])  # fmt: skip

        def on_kbs(kbs, st):
            """The chat asks other knowledge bases: a new conversation over them."""
            if st is None:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), st
            try:
                note = st.use_kbs(kbs)
            except RagError as e:
                return (gr.update(value=list(st.kbs)), public_error(e), gr.skip(), gr.skip(),
                        gr.skip(), gr.skip(), st)  # fmt: skip
            return (gr.skip(), note, st.messages, VIEWER_EMPTY, history_list(st),
                    _info_markdown(library, st), st)  # fmt: skip

        kb_choice.input(
            on_kbs, [kb_choice, state],
            [kb_choice, kb_status, chatbot, viewer, history_pick, info, state],
        ).then(lambda st: scope_choices(st), [state], [scope_issuer, scope_number])  # fmt: skip
        kb_pick.input(kb_view, [kb_pick], [docs, remove_pick, edit_box, readonly])

        def on_resume(conv_id, st):
            if st is None or not conv_id or conv_id == st.conv_id:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            try:
                st.resume(conv_id)
            except RagError as e:
                return gr.skip(), f"无法打开这个对话：{public_error(e)}", gr.skip(), gr.skip(), st
            picker = gr.update(value=list(st.kbs)) if home else gr.skip()
            return st.messages, gr.skip(), VIEWER_EMPTY, picker, st

        history_pick.input(
            on_resume, [history_pick, state], [chatbot, history_note, viewer, kb_choice, state]
        )

        # ------------------------------------------------------------ kept conversations
        def on_rename(conv_id, title, st):
            if st is None or not conv_id:
                return gr.skip(), "请先在上面选择一个对话。", gr.skip()
            try:
                st.rename_conversation(conv_id, title)
            except RagError as e:
                return gr.skip(), f"未能重命名：{public_error(e)}", gr.skip()
            return history_list(st), "已重命名。", ""

        gr.on(
            [rename_btn.click, history_title.submit],
            on_rename,
            [history_pick, history_title, state],
            [history_pick, history_status, history_title],
        )

        def on_delete_ask(conv_id, st):
            if st is None or not conv_id:
                return gr.update(visible=False), "", "请先在上面选择一个对话。"
            try:
                title = st.conversation_title(conv_id)
            except RagError as e:
                return gr.update(visible=False), "", public_error(e)
            ask_text = f"确定删除对话“{esc(title)}”吗？删除后无法恢复。"
            return gr.update(visible=True), ask_text, ""

        delete_btn.click(
            on_delete_ask, [history_pick, state], [hist_confirm, hist_confirm_text, history_status]
        )
        hist_no.click(
            lambda: (gr.update(visible=False), "已取消，对话没有删除。"),
            None,
            [hist_confirm, history_status],
        )

        def on_delete(conv_id, st):
            hide = gr.update(visible=False)
            if st is None or not conv_id:
                return hide, "请先在上面选择一个对话。", gr.skip(), gr.skip(), gr.skip()
            was_open = conv_id == st.conv_id
            try:
                st.delete_conversation(conv_id)
            except RagError as e:
                return hide, f"未能删除：{public_error(e)}", gr.skip(), gr.skip(), gr.skip()
            chat = st.messages if was_open else gr.skip()
            return (
                hide,
                "已删除对话。",
                history_list(st),
                chat,
                gr.update(value=None, visible=False),
            )

        hist_yes.click(
            on_delete,
            [history_pick, state],
            [hist_confirm, history_status, history_pick, chatbot, history_file],
        )

        def on_export(conv_id, st):
            if st is None or not conv_id:
                return gr.update(value=None, visible=False), "请先在上面选择一个对话。"
            try:
                path = st.export_conversation(conv_id, export_dir())
            except RagError as e:
                return gr.update(value=None, visible=False), f"未能导出：{public_error(e)}"
            return gr.update(value=str(path), visible=True), "已导出，点击上面的文件名下载。"

        export_btn.click(on_export, [history_pick, state], [history_file, history_status])

        # ------------------------------------------------------------ asking
        def session(st, request):
            """`st`, or a new session; over a home, always the request's login's (a client
            may ask without loading the page, or with a page of another login's state)."""
            st = st or new_state()
            name = getattr(request, "username", None) or ""
            if home and st.user != name:  # nothing of another login's session is kept
                st = new_state()
                st.login(name)
            return st

        def on_ask(text, st, request: gr.Request):
            st = session(st, request)
            if not isinstance(text, str) or not text.strip():
                yield st.messages, "", st
                return
            for messages in st.respond(text):
                yield messages, "", st

        asked = gr.on(
            [question.submit, send.click],
            on_ask,
            [question, state],
            [chatbot, question, state],
            concurrency_limit=4,
            concurrency_id="ask",
        )
        asked.then(history_list, [state], [history_pick])

        def on_example(st, evt: gr.SelectData, request: gr.Request):
            value = evt.value if isinstance(evt.value, dict) else {"text": str(evt.value)}
            yield from on_ask(value.get("text", ""), st, request)

        chatbot.example_select(
            on_example,
            [state],
            [chatbot, question, state],
            concurrency_limit=4,
            concurrency_id="ask",
        ).then(history_list, [state], [history_pick])

        def on_scope(issuer, number, st):
            st = st or new_state()
            return st.scope(issuer, number), st

        gr.on(
            [scope_issuer.change, scope_number.change],
            on_scope,
            [scope_issuer, scope_number, state],
            [scope_status, state],
        )

        def scope_choices(st=None):
            if home and (st is None or not st.kbs):
                return gr.update(choices=[""]), gr.update(choices=[""])
            found = (st.library if st is not None else library).scopes()
            return (
                gr.update(choices=[""] + found["issuer"]),
                gr.update(choices=[""] + found["doc_number"]),
            )

        def on_new(st):
            st = st or new_state()
            st.reset()
            return [], st, VIEWER_EMPTY, gr.update(visible=False), "", gr.update(visible=False)

        cleared = [chatbot, state, viewer, fb_row, fb_status, page_image]
        new_chat.click(on_new, [state], cleared).then(history_list, [state], [history_pick])
        chatbot.clear(on_new, [state], cleared).then(history_list, [state], [history_pick])

        def on_open(st, evt: gr.EventData):
            data = getattr(evt, "_data", None) or {}
            try:
                turn, n = int(data.get("turn")), int(data.get("n"))
            except (TypeError, ValueError):
                return gr.skip(), gr.skip()
            found = st.source(turn, n) if st else None
            if found is None:
                missing = '<div class="rag-doc rag-doc-empty">找不到这条引用。</div>'
                return missing, gr.update(value=None, visible=False)
            lib, c = found
            return lib.document_view(c), _page_update(lib, c)

        def _page_update(lib, c):
            """The cited page as a picture, for a PDF or a scan; hidden for other files."""
            view, note = lib.page_view(c)
            if view is None:
                return gr.update(value=None, visible=bool(note), label=f"原页：{note}")
            label = (
                f"引用 [{c.n}] 所在的原页：第{view.page}页（共{view.pages}页），黄色为引用的文字"
            )
            if view.from_scan:
                label += "（扫描件识别，位置为近似）"
            if note:
                label += f"；{note}"
            return gr.update(value=view.image, visible=True, label=label)

        viewer.click(on_open, [state], [viewer, page_image], concurrency_limit=4)

        def on_like(st, evt: gr.LikeData):
            idx = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
            liked = evt.liked
            rating = (
                "up" if liked in (True, "Like") else "down" if liked in (False, "Dislike") else None
            )
            if st is None or rating is None:
                return gr.update(visible=False), "", st
            try:
                st.feedback(int(idx), rating)
            except (TypeError, ValueError, IndexError):  # event data no page sends
                return gr.update(visible=False), "未记录：无效的请求。", st
            except RagError as e:
                return gr.update(visible=False), f"未记录：{public_error(e)}", st
            thumb = "👍" if rating == "up" else "👎"
            return gr.update(visible=True), f"已记录反馈 {thumb}，可以补充说明（可选）。", st

        chatbot.like(on_like, [state], [fb_row, fb_status, state])

        def on_comment(text, st):
            if st is None or st.pending is None:
                return gr.update(visible=False), "", "请先点赞或点踩一个回答。", st
            if (text or "").strip():
                try:
                    st.comment(text)
                except RagError as e:  # too long: the comment stays in the box to shorten
                    return gr.update(visible=True), gr.skip(), public_error(e), st
                return gr.update(visible=False), "", "已记录说明，谢谢！", st
            st.pending = None
            return gr.update(visible=False), "", "", st

        gr.on(
            [fb_send.click, fb_comment.submit],
            on_comment,
            [fb_comment, state],
            [fb_row, fb_comment, fb_status, state],
        )

        # ------------------------------------------------------------ documents
        def on_upload(files, kb, st, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
            st = st or new_state()
            paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
            if not paths:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), st
            try:  # a reader's upload is refused here, whatever the page showed
                lib = kb_library(request, kb, edit=True)
            except RagError as e:
                for p in paths:
                    Path(p).unlink(missing_ok=True)
                refused = f'<div class="rag-error">{esc(public_error(e))}</div>'
                return refused, gr.skip(), gr.skip(), None, gr.skip(), st
            user = getattr(request, "username", None)
            who = f"user:{user}" if user else f"addr:{getattr(request.client, 'host', '?')}"
            mb = sum(Path(p).stat().st_size for p in paths if Path(p).is_file()) / 2**20
            if not uploads.allow(who, len(paths), mb):
                for p in paths:  # refused: the temporary copies go at once
                    Path(p).unlink(missing_ok=True)
                refused = f'<div class="rag-error">{esc(uploads.message())}</div>'
                return refused, gr.skip(), gr.skip(), None, gr.skip(), st
            progress(0.05, desc=f"正在入库 {len(paths)} 个文件……")
            with upload_progress(progress):  # a line per scanned page read
                results = lib.add_files(
                    [(p, Path(p).name) for p in paths],
                    log=lambda m: progress(0.2, desc=m),
                    user=user,  # the login name, under --auth
                )
            progress(1.0, desc="完成")
            return (
                render_results(results),
                doc_table(lib),
                gr.update(choices=doc_choices(lib)),
                None,
                _info_markdown(library, st),
                st,
            )

        upload.upload(
            on_upload,
            [upload, kb_pick, state],
            [upload_result, docs, remove_pick, upload, info, state],
            # embedding runs outside the index's write lock (Library.add_files): a large
            # upload does not hold up removals or a second upload
            concurrency_limit=2,
            concurrency_id="upload",
        )

        def on_remove_ask(doc_ids, kb, request: gr.Request):
            """First step: name what would be removed and ask; nothing is removed yet."""
            if not doc_ids:
                note = '<div class="rag-doc-note">请先选择要删除的文档。</div>'
                return note, gr.update(visible=False), ""
            try:
                lib = kb_library(request, kb, edit=True)
            except RagError as e:
                return (
                    f'<div class="rag-error">{esc(public_error(e))}</div>',
                    gr.update(visible=False),
                    "",
                )
            names = dict((v, k) for k, v in doc_choices(lib))
            picked = [names[d] for d in doc_ids if d in names]
            if not picked:  # removed meanwhile (another session)
                note = '<div class="rag-doc-note">所选文档已不在知识库中，请刷新列表。</div>'
                return note, gr.update(visible=False), ""
            return "", gr.update(visible=True), render_remove_confirm(picked)

        remove_btn.click(
            on_remove_ask, [remove_pick, kb_pick], [remove_result, confirm_box, confirm_text]
        )
        confirm_no.click(
            lambda: ('<div class="rag-doc-note">已取消，没有删除任何文档。</div>',
                     gr.update(visible=False)),
            None,
            [remove_result, confirm_box],
        )  # fmt: skip

        def on_remove(doc_ids, kb, st, request: gr.Request):
            hide = gr.update(visible=False)
            if not doc_ids:
                note = '<div class="rag-doc-note">请先选择要删除的文档。</div>'
                return note, gr.skip(), gr.skip(), gr.skip(), hide
            try:  # a reader's removal is refused here, whatever the page showed
                lib = kb_library(request, kb, edit=True)
                results = lib.remove(list(doc_ids))
            except RagError as e:
                error = f'<div class="rag-error">{esc(public_error(e))}</div>'
                return error, gr.skip(), gr.skip(), gr.skip(), hide
            return (
                render_results(results),
                doc_table(lib),
                gr.update(choices=doc_choices(lib), value=[]),
                _info_markdown(library, st),
                hide,
            )

        confirm_yes.click(
            on_remove,
            [remove_pick, kb_pick, state],
            [remove_result, docs, remove_pick, info, confirm_box],
            concurrency_limit=1,
            concurrency_id="remove",
        )

        def on_refresh(kb, st, request: gr.Request):
            st = st or new_state()
            table, picks, _, _ = kb_view(kb, request)
            return (table, picks, *scope_choices(st))

        refresh.click(on_refresh, [kb_pick, state], [docs, remove_pick, scope_issuer, scope_number])

        def on_apply(g, k, st):
            st = st or new_state()
            try:
                msg = st.apply(generator=g, top_k=k)
            except RagError as e:
                msg = f"设置未生效：{public_error(e)}"
            return msg, _info_markdown(library, st), st

        apply.click(
            on_apply,
            [gen, top_k, state],
            [settings_status, info, state],
        )

        # ------------------------------------------------------------ admin
        admin_outputs = [admin_tab, admin_users, admin_summary, admin_per_day, admin_cited]
        admin_outputs.append(admin_recent)
        admin_refresh.click(on_admin_load, [state], admin_outputs)
        admin_tab.select(on_admin_load, [state], admin_outputs)  # the latest, each time it opens
    return demo
