"""Every UI string, in English and Simplified Chinese. The page follows the browser's language."""

from __future__ import annotations

import gradio as gr

EN: dict[str, str] = {
    "app_title": "AIGC Studio",
    "app_subtitle": "See generative models work: a language model writes, and you watch it token by token.",
    "tab_text": "Text",
    "text_chat": "Chat",
    "text_completion": "Completion",
    "chatbot": "Conversation",
    "message": "Message",
    "message_placeholder": "Type a message and press Enter…",
    "send": "Send",
    "stop": "Stop",
    "regenerate": "Regenerate",
    "undo": "Undo",
    "clear": "Clear",
    "system_prompt": "System prompt",
    "preset": "Preset",
    "preset_info": "Sets the system prompt and sampling settings for a kind of writing.",
    "parameters": "Parameters",
    "max_new_tokens": "Max new tokens",
    "temperature": "Temperature (0 = greedy)",
    "top_p": "Top-p",
    "top_k": "Top-k (0 = off)",
    "min_p": "Min-p",
    "repetition_penalty": "Repetition penalty",
    "seed": "Seed (-1 = random)",
    "reuse_seed": "♻ Reuse last seed",
    "random_seed": "🎲 Random seed",
    "stats": "Statistics",
    "download_md": "Download Markdown",
    "download_json": "Download JSON",
    "export": "Export conversation",
    "prompt": "Prompt",
    "prompt_placeholder": "Start a text and the model continues it…",
    "generate": "Generate",
    "output": "Output",
    "examples": "Examples",
    "model_info": "Model",
    "load_failed": "This tab's model could not be loaded",
    "how_to_fix": "How to fix",
    "preset_chat": "Assistant",
    "preset_news": "News brief",
    "preset_ad": "Ad copy",
    "preset_story": "Short story",
    "preset_lesson": "Lesson outline",
    "preset_product": "Product description",
}

ZH: dict[str, str] = {
    "app_title": "AIGC 工作室",
    "app_subtitle": "亲眼看生成模型工作：语言模型逐字写作，过程实时可见。",
    "tab_text": "文本",
    "text_chat": "对话",
    "text_completion": "续写",
    "chatbot": "对话记录",
    "message": "消息",
    "message_placeholder": "输入消息后按回车…",
    "send": "发送",
    "stop": "停止",
    "regenerate": "重新生成",
    "undo": "撤销",
    "clear": "清空",
    "system_prompt": "系统提示词",
    "preset": "预设",
    "preset_info": "为某类写作设置系统提示词和采样参数。",
    "parameters": "参数",
    "max_new_tokens": "最大新生成词元数",
    "temperature": "温度（0 = 贪心解码）",
    "top_p": "Top-p",
    "top_k": "Top-k（0 = 关闭）",
    "min_p": "Min-p",
    "repetition_penalty": "重复惩罚",
    "seed": "随机种子（-1 = 随机）",
    "reuse_seed": "♻ 复用上次种子",
    "random_seed": "🎲 随机种子",
    "stats": "统计",
    "download_md": "下载 Markdown",
    "download_json": "下载 JSON",
    "export": "导出对话",
    "prompt": "提示",
    "prompt_placeholder": "写一段开头，模型接着写…",
    "generate": "生成",
    "output": "输出",
    "examples": "示例",
    "model_info": "模型",
    "load_failed": "本页的模型未能加载",
    "how_to_fix": "解决方法",
    "preset_chat": "助手",
    "preset_news": "新闻简报",
    "preset_ad": "广告文案",
    "preset_story": "短篇故事",
    "preset_lesson": "课程大纲",
    "preset_product": "产品描述",
}

assert EN.keys() == ZH.keys(), "every UI string needs both languages"

# Gradio resolves these keys in the browser, from its language setting.
I18N = gr.I18n(**{"en": EN, "zh-CN": ZH})


def t(key: str):
    """A translatable UI string (resolved per visitor in the browser)."""
    if key not in EN:
        raise KeyError(f"no UI string {key!r}")
    return I18N(key)
