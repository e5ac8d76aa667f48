"""A Ray program using generators the way Ray's "Ray Generators" and "Dynamic generators"
pages show them, run unchanged with ``ember run``: ``ray.ObjectRefGenerator`` and
``ray.DynamicObjectRefGenerator`` are found where Ray has them."""

from __future__ import annotations

from tests.rayapi.helpers import output_lines, run_ray_program

PROGRAM = """
import asyncio
import ray

ray.init()


@ray.remote
def fetch_pages(n):
    for page in range(n):
        yield {"page": page, "rows": list(range(page))}


gen = fetch_pages.remote(3)
print("streaming", isinstance(gen, ray.ObjectRefGenerator),
      [len(ray.get(ref)["rows"]) for ref in gen])


@ray.remote
def risky():
    yield "ok"
    raise ValueError("bad page")


values = []
for ref in risky.remote():
    try:
        values.append(ray.get(ref))
    except ValueError as e:
        values.append(f"error: {e}")
print("errors", values[0], "bad page" in values[1], len(values))


@ray.remote(num_returns="dynamic")
def split(n):
    for i in range(n):
        yield i * i


dyn = ray.get(split.remote(4))
print("dynamic", isinstance(dyn, ray.DynamicObjectRefGenerator), ray.get(list(dyn)))


@ray.remote
class TokenStream:
    async def tokens(self, text):
        for word in text.split():
            await asyncio.sleep(0)
            yield word


async def main():
    stream = TokenStream.remote()
    return [await ref async for ref in stream.tokens.remote("to be or not")]


print("async", asyncio.run(main()))
ready, _ = ray.wait([fetch_pages.remote(1)], timeout=60)
print("wait", len(ready))
ray.shutdown()
"""


def test_generator_program_runs_under_ember_run(tmp_path):
    lines = output_lines(run_ray_program(tmp_path, PROGRAM))
    assert "streaming True [0, 1, 2]" in lines, lines
    assert "errors ok True 2" in lines, lines
    assert "dynamic True [0, 1, 4, 9]" in lines, lines
    assert "async ['to', 'be', 'or', 'not']" in lines, lines
    assert "wait 1" in lines, lines
