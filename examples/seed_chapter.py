"""The seed chapter: Ray core code run unchanged on ember (`import ember as ray`).

Unchanged apart from the import, `ray.init(num_cpus=8)` (so the shape of the timings
is the same on any machine), the plain function run sequentially for comparison,
and the `timing:` lines. Run it with `make demo`.
"""

import time

import ember as ray

ray.init(num_cpus=8)

reference_data = ["Fast", "and", "Simple", "Distributed", "Computing"]
ref_data_object_ref = ray.put(reference_data)


def get_ref_datum(id):  # the plain function, for the sequential baseline
    time.sleep(id / 10.0)
    ref_data = ray.get(ref_data_object_ref)
    return (id, 2 * id, ref_data[id % len(ref_data)])


start = time.perf_counter()
sequential = [get_ref_datum(i) for i in range(10)]
print(f"timing: sequential calls: {time.perf_counter() - start:.2f} s")


@ray.remote
def get_ref_datum_task(id):
    time.sleep(id / 10.0)
    ref_data = ray.get(ref_data_object_ref)  # a ref captured in the closure
    return (id, 2 * id, ref_data[id % len(ref_data)])


start = time.perf_counter()
data = ray.get([get_ref_datum_task.remote(i) for i in range(10)])  # order kept, runs in parallel
print(f"timing: parallel get: {time.perf_counter() - start:.2f} s")
print(data)
assert data == sequential

start = time.perf_counter()
first_result = None
refs = [get_ref_datum_task.remote(i) for i in range(10)]
while refs:  # results as they finish
    finished, refs = ray.wait(refs, timeout=5.0)
    if finished and first_result is None:
        first_result = time.perf_counter() - start
    print(ray.get(finished))
print(
    f"timing: wait loop: first result after {first_result:.2f} s, "
    f"all after {time.perf_counter() - start:.2f} s"
)


@ray.remote
def get_ref_datum_task2(tuple):  # a ref passed as an argument arrives resolved
    return tuple, (tuple[1], 2 * tuple[1], reference_data[tuple[1] % 5])


print(
    ray.get(
        [get_ref_datum_task2.remote(r) for r in [get_ref_datum_task.remote(i) for i in [2, 4, 6]]]
    )
)
