"""The official openai Python SDK against Spillway, signing in with an Entra ID token the way
Azure OpenAI clients do (`azure_ad_token_provider`), changed only in its endpoint.

Run by tests/sdk.rs, which starts the gateway and the simulated Entra ID and passes:
SPILLWAY_URL (the gateway's base URL) and SPILLWAY_TOKEN (a token the simulated tenant
issued; in production the provider is azure.identity's get_bearer_token_provider).
Prints one JSON line of what it saw; exits non-zero on any failure.
"""
import json
import os
import sys

from openai import AuthenticationError, AzureOpenAI

calls = []


def provider():
    calls.append(1)
    return os.environ["SPILLWAY_TOKEN"]


client = AzureOpenAI(
    azure_endpoint=os.environ["SPILLWAY_URL"],
    api_version="2024-10-21",
    azure_ad_token_provider=provider,
    max_retries=0,
)
messages = [{"role": "user", "content": "Say hello"}]
reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=50)
text = reply.choices[0].message.content
assert text, reply
assert reply.usage.completion_tokens > 0, reply

chunks = client.chat.completions.create(
    model="gpt-4o-mini", messages=messages, max_tokens=50, stream=True
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert streamed, "the stream carried text"

# A token the issuer never signed is refused with Azure's 401, which the SDK raises as such.
bad = AzureOpenAI(
    azure_endpoint=os.environ["SPILLWAY_URL"],
    api_version="2024-10-21",
    azure_ad_token_provider=lambda: os.environ["SPILLWAY_TOKEN"][:-4] + "AAAA",
    max_retries=0,
)
try:
    bad.chat.completions.create(model="gpt-4o-mini", messages=messages)
    sys.exit("a forged token was served")
except AuthenticationError as e:
    refused = e.status_code

print(json.dumps({"text": text, "streamed": streamed, "provider_calls": len(calls), "refused": refused}))
