"""Streams one chat completion with the official OpenAI SDK and reports how the stream ended:
whether the SDK raised (and what), and how many chunks arrived before. A stream the provider cut
off must make the SDK raise; it must never look like a normal end.

usage: stream_fault.py --base-url URL --key KEY --model M
"""

import argparse
import json

from openai import OpenAI


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=20)
    chunks = 0
    text = ""
    raised = None
    message = None
    try:
        stream = client.chat.completions.create(
            model=args.model,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
        )
        for chunk in stream:
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    except Exception as e:  # the point: which exception the application gets
        raised = type(e).__name__
        message = str(e)
    print(json.dumps({"chunks": chunks, "text": text, "raised": raised, "message": message}))


if __name__ == "__main__":
    main()
