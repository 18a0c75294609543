"""One process of the two-process training test (run by torchrun).

Fits a learner through accelerate on every rank and writes what the test
compares: the world size the accelerator saw, the weights, the number of
training batches per epoch, and the codes.
"""

import json
import sys

import numpy as np
from accelerate import Accelerator

from skhash import DQNQuantizer, HQHasher, MultiModal


def main(learner_name, out):
    rng = np.random.RandomState(0)
    n = 256
    y = rng.randint(4, size=n)
    X = MultiModal(
        img=(rng.randn(n, 12) + 2 * y[:, None]).astype(np.float32),
        txt=(rng.randn(n, 8) - 2 * y[:, None]).astype(np.float32),
    )
    accelerator = Accelerator(cpu=True)
    common = dict(
        hidden_layer_sizes=(16,),
        max_epochs=3,
        batch_size=32,
        random_state=0,
        accelerator=accelerator,
    )
    if learner_name == "HQHasher":
        est = HQHasher(n_bits=16, n_codebooks=2, n_codewords=8, **common)
    else:
        est = DQNQuantizer(n_codebooks=2, n_codewords=8, **common)
    est.fit(X, y)
    codes = est.transform(X)
    state = est.net_.module_.state_dict()
    rank = accelerator.process_index
    np.savez(
        f"{out}/rank{rank}.npz",
        weights=np.concatenate([v.detach().numpy().ravel() for v in state.values()]),
        embedding=codes["img"].embedding,
        y=y,
    )
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(
            {
                "world": accelerator.num_processes,
                "batches": [len(row["batches"]) for row in est.history_],
                "loss": est.history_[-1, "train_loss"],
                "accelerator_param": est.get_params()["accelerator"] is not None,
            },
            f,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
