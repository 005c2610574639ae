"""Layer collapse of every pruning method at 99 % and 99.9 % sparsity.

A 4-hidden-layer MLP (64-64-64-64-64-10) pruned from scratch with global
ranking; for each method, the layers it empties or cuts off from the
gradient (`keras_egf.pruning.collapse.layer_collapse`) and the EGF_2 of the
result on two batches of random inputs.

    python -m benchmarks.layer_collapse
"""

import numpy as np


def collapse_table(sparsities=(0.99, 0.999), seed=1):
    """{(method, sparsity): CollapseReport}."""
    import keras_egf as ke
    from keras_egf import pruning
    from keras_egf.pruning.collapse import layer_collapse

    rng = np.random.default_rng(0)
    x = rng.random((128, 64)).astype("float32")
    y = rng.integers(0, 10, 128)
    batches = [(x[:64], y[:64]), (x[64:], y[64:])]
    table = {}
    for sparsity in sparsities:
        for method in pruning.all_pruning_method_names():
            model = ke.build_mlp((64,), [64, 64, 64, 64], 10, seed=seed)
            ke.prune(model, sparsity, method=method, scope="global", seed=0,
                     batches=batches)
            table[(method, sparsity)] = layer_collapse(model, batches)
    return table


def main():
    table = collapse_table()
    print("| method | sparsity | kept per layer | collapsed layers | EGF_2 |")
    print("|---|---|---|---|---|")
    for (method, sparsity), r in sorted(table.items()):
        kept = "/".join(str(h.kept) for h in r.layers)
        print(f"| {method} | {sparsity:.1%} | {kept} | "
              f"{', '.join(r.collapsed) or 'none'} | {r.egf_2:.3g} |")


if __name__ == "__main__":
    main()
