"""A scripted conversation through the gateway with an official SDK, as an application would hold
it: plain, streamed, with tools, with a tool result turn, with an image. Prints what each step
saw (text, tool calls, usage) as one JSON object; exits non-zero when a step fails.

With --api embeddings or images, the OpenAI SDK asks for embeddings (as the SDK does by
default: base64, decoded by the SDK) or an image instead. With --api models (base URL: the
origin), both SDKs list the models (the Anthropic SDK three a page, following its cursor) and
fetch --model by id.

usage: conversation.py --api openai|anthropic|embeddings|images --base-url URL --key KEY --model M
"""

import argparse
import json
import sys

# A 1x1 PNG.
PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}
QUESTION = "What's the weather in Boston?"


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def openai_usage(u):
    details = getattr(u, "prompt_tokens_details", None)
    return {
        "prompt": u.prompt_tokens,
        "completion": u.completion_tokens,
        "cached": (details.cached_tokens or 0) if details else 0,
    }


def run_openai(args):
    from openai import OpenAI

    client = OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=20)
    out = {}
    say = [{"role": "user", "content": "Hello"}]

    r = client.chat.completions.create(model=args.model, messages=say)
    check(r.choices[0].message.content, "plain: no text")
    out["plain"] = {"text": r.choices[0].message.content, "usage": openai_usage(r.usage)}

    text, usage = "", None
    for chunk in client.chat.completions.create(
        model=args.model, messages=say, stream=True, stream_options={"include_usage": True}
    ):
        for c in chunk.choices:
            text += c.delta.content or ""
        if chunk.usage:
            usage = openai_usage(chunk.usage)
    check(text, "stream: no text")
    check(usage, "stream: no usage")
    out["stream"] = {"text": text, "usage": usage}

    tools = [{"type": "function", "function": WEATHER}]
    ask = [{"role": "user", "content": QUESTION}]
    r = client.chat.completions.create(model=args.model, messages=ask, tools=tools)
    calls = r.choices[0].message.tool_calls
    check(calls, "tools: no tool call")
    check(r.choices[0].finish_reason == "tool_calls", "tools: finish_reason")
    call = calls[0]
    json.loads(call.function.arguments)
    out["tools"] = {"tool": call.function.name, "usage": openai_usage(r.usage)}

    turn = ask + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 22})},
    ]
    r = client.chat.completions.create(model=args.model, messages=turn, tools=tools)
    check(r.choices[0].message.content, "tool result: no text")
    out["tool_result"] = {"text": r.choices[0].message.content, "usage": openai_usage(r.usage)}

    image = [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PIXEL}},
    ]}]
    r = client.chat.completions.create(model=args.model, messages=image)
    check(r.choices[0].message.content, "image: no text")
    out["image"] = {"text": r.choices[0].message.content, "usage": openai_usage(r.usage)}
    return out


def anthropic_usage(u):
    return {
        "input": u.input_tokens,
        "output": u.output_tokens,
        "cache_read": u.cache_read_input_tokens or 0,
        "cache_write": u.cache_creation_input_tokens or 0,
    }


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def run_anthropic(args):
    from anthropic import Anthropic

    client = Anthropic(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=20)
    out = {}
    say = [{"role": "user", "content": "Hello"}]

    m = client.messages.create(model=args.model, max_tokens=256, messages=say)
    check(text_of(m), "plain: no text")
    out["plain"] = {"text": text_of(m), "usage": anthropic_usage(m.usage)}

    with client.messages.stream(model=args.model, max_tokens=256, messages=say) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(text, "stream: no text")
    out["stream"] = {"text": text, "usage": anthropic_usage(final.usage)}

    tools = [{"name": WEATHER["name"], "description": WEATHER["description"],
              "input_schema": WEATHER["parameters"]}]
    ask = [{"role": "user", "content": QUESTION}]
    m = client.messages.create(model=args.model, max_tokens=256, messages=ask, tools=tools)
    uses = [b for b in m.content if b.type == "tool_use"]
    check(uses, "tools: no tool_use")
    check(m.stop_reason == "tool_use", "tools: stop_reason")
    out["tools"] = {"tool": uses[0].name, "usage": anthropic_usage(m.usage)}

    turn = ask + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": uses[0].id, "content": json.dumps({"temperature": 22})},
        ]},
    ]
    m = client.messages.create(model=args.model, max_tokens=256, messages=turn, tools=tools)
    check(text_of(m), "tool result: no text")
    out["tool_result"] = {"text": text_of(m), "usage": anthropic_usage(m.usage)}

    image = [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
        {"type": "text", "text": "What is in this image?"},
    ]}]
    m = client.messages.create(model=args.model, max_tokens=256, messages=image)
    check(text_of(m), "image: no text")
    out["image"] = {"text": text_of(m), "usage": anthropic_usage(m.usage)}
    return out


def run_embeddings(args):
    from openai import OpenAI

    client = OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=20)
    inputs = ["The food was delicious.", "The waiter was friendly."]
    if args.model.startswith("amazon.titan"):
        inputs = inputs[:1]  # Titan embeds one input per request
    r = client.embeddings.create(model=args.model, input=inputs)
    check(len(r.data) == len(inputs), "embeddings: one vector per input")
    check(all(isinstance(x, float) for x in r.data[0].embedding), "embeddings: floats")
    return {
        "vectors": [d.embedding for d in r.data],
        "usage": {"prompt": r.usage.prompt_tokens, "total": r.usage.total_tokens},
    }


def run_images(args):
    from openai import OpenAI

    client = OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=20)
    r = client.images.generate(model=args.model, prompt="A lighthouse at dawn", n=1, size="1024x1024")
    check(r.data and r.data[0].b64_json, "images: no image")
    return {"images": len(r.data), "usage": r.usage.model_dump() if r.usage else None}


def run_models(args):
    from anthropic import Anthropic
    from openai import OpenAI

    openai = OpenAI(base_url=args.base_url + "/v1", api_key=args.key, max_retries=0, timeout=20)
    listed = [m.id for m in openai.models.list()]
    one = openai.models.retrieve(args.model)
    check(one.id == args.model and one.object == "model", "openai: retrieve")
    anthropic = Anthropic(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=20)
    paged = [m.id for m in anthropic.models.list(limit=3)]  # the SDK follows `after_id`
    info = anthropic.models.retrieve(args.model)
    check(info.id == args.model and info.type == "model", "anthropic: retrieve")
    return {
        "openai": listed,
        "openai_one": {"id": one.id, "owned_by": one.owned_by, "created": one.created},
        "anthropic": paged,
        "anthropic_one": {"id": info.id, "display_name": info.display_name,
                          "created_at": info.created_at.isoformat()},
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--api", choices=["openai", "anthropic", "embeddings", "images", "models"], required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--model", required=True)
    args = p.parse_args()
    try:
        run = {"openai": run_openai, "anthropic": run_anthropic,
               "embeddings": run_embeddings, "images": run_images, "models": run_models}[args.api]
        report = run(args)
    except Exception as e:  # every failure is reported the same way: type and message
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
