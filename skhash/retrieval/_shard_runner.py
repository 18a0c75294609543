"""Where the tasks of a :class:`~skhash.retrieval.ShardedRetriever` run.

The mixin :class:`_ShardRunner` starts a task on every shard and collects
the answers: on the workers of a :class:`dask.distributed.Client` (a task
placed on the worker that holds its shard), or, without a client, in local
threads. The answers come back all together or not at all: a shard lost
with its worker raises :class:`~skhash.exceptions.ShardUnavailableError`,
never a partial result. What the tasks do is in
:mod:`skhash.retrieval._shard_tasks`.
"""

from __future__ import annotations

from concurrent.futures import CancelledError, ThreadPoolExecutor

from skhash.exceptions import ShardUnavailableError
from skhash.retrieval._shard_manifest import _SHARD_PARAMS


class _ShardRunner:
    """Mixin of :class:`~skhash.retrieval.ShardedRetriever`: running tasks."""

    def _shard_params(self):
        return {p: getattr(self, p) for p in _SHARD_PARAMS}

    def _workers(self):
        workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            raise ValueError(
                f"client={self.client!r} has no workers to hold the shards; "
                "start some (client.wait_for_workers(n)) or pass client=None "
                "to search in local threads."
            )
        return workers

    def _submit_all(self, fn, args_list, *, workers=None):
        """Start ``fn(*args)`` for each args; shard futures lead the args."""
        client = self.client
        if client is None:
            return [("local", fn, args) for args in args_list]
        futures = []
        for i, args in enumerate(args_list):
            kw = {}
            if workers is not None:
                kw = dict(workers=[workers[i % len(workers)]], allow_other_workers=True)
            futures.append(client.submit(fn, *args, pure=False, **kw))
        return futures

    def _gather(self, futures, shard_ids):
        """Results of ``_submit_all``, all or an error (never a subset)."""
        if self.client is None:
            local = [(fn, args) for _, fn, args in futures]
            if len(local) == 1:
                return [local[0][0](*local[0][1])]
            with ThreadPoolExecutor(max_workers=len(local)) as ex:
                running = [ex.submit(fn, *args) for fn, args in local]
                return [f.result() for f in running]
        from distributed import KilledWorker
        from distributed.comm import CommClosedError

        try:
            return self.client.gather(futures)
        except (CancelledError, KilledWorker, CommClosedError) as exc:
            for f in futures:
                f.cancel()
            lost = [
                int(s)
                for s, f in zip(shard_ids, futures)
                if s is not None and f.status != "finished"
            ]
            raise ShardUnavailableError(
                f"Shard(s) {lost or shard_ids} of {len(self._shards)} did not "
                f"answer: a worker holding them was lost ({type(exc).__name__}: "
                f"{exc}). No partial result is returned. A shard fit from memory "
                "is lost with its worker: refit, or save() the index to a shared "
                "file system and load() it, so that another worker can re-map "
                "a lost shard."
            ) from exc

    def _run_on_shards(self, fn, args_list, shard_ids=None, shards=None):
        shards = self._shards if shards is None else shards
        ids = list(range(len(shards))) if shard_ids is None else shard_ids
        self._check_shards_alive(shards, ids)
        futures = self._submit_all(fn, [(s, *a) for s, a in zip(shards, args_list)])
        return self._gather(futures, ids)

    def _check_shards_alive(self, shards, ids):
        if self.client is None:
            return
        dead = [i for i, s in zip(ids, shards) if s.status in ("cancelled", "lost")]
        if dead:
            raise ShardUnavailableError(
                f"Shard(s) {dead} of {len(self._shards)} were lost with their "
                "worker; a shard fit from memory cannot be recovered. Refit, or "
                "save() the index to a shared file system and load() it so that "
                "another worker can re-map a lost shard."
            )
