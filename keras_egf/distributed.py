"""The chief and the workers of a sweep (Keras Tuner's gRPC oracle), made to
survive a lost worker and to refuse what cannot work.

Keras Tuner's own chief listens with SO_REUSEPORT (a second chief on the
same port starts too, and one of them gets no requests), keeps a trial
whose worker was killed RUNNING for ever (the chief then never exits, and
the other workers stop as soon as no new point is left), and its workers
wait up to an hour for a chief that is not there. Here:
- `serve` (the chief) refuses a port in use, hears from every worker (its
  requests and the `Heartbeat` of the trial it runs) and re-queues a trial
  whose worker has sent nothing for `worker_timeout_s` (`requeue_lost`),
  dropping that worker; it says what it
  is waiting for whenever that changes (and every STATUS_EVERY_S);
- a worker checks that a chief answers within `chief_timeout_s`
  (`wait_for_chief`), bounds every call to it by the same time
  (`BoundedStub`), sends a heartbeat while it trains, and while other
  workers' trials run it waits and asks again (a re-queued trial comes to
  whichever worker asks).
"""

import os
import threading
import time

DEFAULT_HEARTBEAT_S = 10.0
DEFAULT_WORKER_TIMEOUT_S = 120.0
DEFAULT_CHIEF_TIMEOUT_S = 120.0
STATUS_EVERY_S = 60.0


def _fatal_error():
    import keras_tuner

    return keras_tuner.errors.FatalError


class ChiefError(_fatal_error()):
    """No chief answered, or the chief stopped answering (the message names
    its address). A Keras Tuner FatalError: it ends the search instead of
    failing the trial."""


def address():
    """The chief's `IP:PORT` (KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT)."""
    return (f"{os.environ['KERASTUNER_ORACLE_IP']}:"
            f"{os.environ['KERASTUNER_ORACLE_PORT']}")


class Liveness:
    """When the chief last heard of each trial (its worker's requests and
    heartbeats) and of each worker (`time.monotonic()`)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.trials = {}
        self.tuners = {}

    def heard(self, trial_id=None, tuner_id=None):
        now = time.monotonic()
        with self._lock:
            if trial_id:
                self.trials[trial_id] = now
            if tuner_id:
                self.tuners[tuner_id] = now

    def silent_for(self, trial_id=None, tuner_id=None, now=None):
        """Seconds since the chief last heard of it (0 the first time it is
        asked: the clock starts then)."""
        now = time.monotonic() if now is None else now
        table, key = (self.trials, trial_id) if trial_id else (self.tuners, tuner_id)
        with self._lock:
            return now - table.setdefault(key, now)


def _servicer(oracle, liveness):
    from keras_tuner.src.distribute import oracle_chief

    class Servicer(oracle_chief.OracleServicer):
        """Keras Tuner's servicer, noting whom the chief hears from."""

        def CreateTrial(self, request, context):
            liveness.heard(tuner_id=request.tuner_id)
            response = super().CreateTrial(request, context)
            liveness.heard(trial_id=response.trial.trial_id)
            return response

        def UpdateTrial(self, request, context):
            liveness.heard(trial_id=request.trial_id)
            return super().UpdateTrial(request, context)

        def EndTrial(self, request, context):
            liveness.heard(trial_id=request.trial.trial_id)
            return super().EndTrial(request, context)

        def GetTrial(self, request, context):  # also the workers' heartbeat
            liveness.heard(trial_id=request.trial_id)
            return super().GetTrial(request, context)

    return Servicer(oracle)


def _synchronized(func):
    """keras_tuner.synchronized: one oracle call at a time (the gRPC threads
    run the others)."""
    import keras_tuner

    return keras_tuner.synchronized(func)


@_synchronized
def requeue_lost(oracle, liveness, timeout_s):
    """Sends every trial whose worker the chief has not heard from for
    `timeout_s` back to the queue (the next worker that asks gets it), and
    forgets workers that have not asked for as long; returns a line for
    each."""
    # keras_egf.sweep imports this module: its oracle module is imported here
    from keras_egf.sweep import oracle as oracle_lib

    lines = []
    now = time.monotonic()
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        silent = liveness.silent_for(trial_id=trial.trial_id, now=now)
        if silent <= timeout_s:
            continue
        del oracle.ongoing_trials[tuner_id]
        oracle.tuner_ids.discard(tuner_id)
        oracle_lib.requeue(oracle, trial)
        oracle.save()
        lines.append(
            f"Chief: trial_{trial.trial_id} re-queued: its worker {tuner_id} "
            f"sent nothing for {silent:.0f} s (killed or cut off); the next "
            "worker that asks runs it again from scratch.")
    for tuner_id in sorted(oracle.tuner_ids - set(oracle.ongoing_trials)):
        silent = liveness.silent_for(tuner_id=tuner_id, now=now)
        if silent > timeout_s:
            oracle.tuner_ids.discard(tuner_id)
            lines.append(f"Chief: worker {tuner_id} has not asked for a trial "
                         f"for {silent:.0f} s; no longer waiting for it.")
    return lines


@_synchronized
def _status(oracle, liveness, total):
    """(what the chief waits for, that as a line with how long each trial's
    worker has been silent)."""
    from keras_tuner.engine import trial as trial_module

    done = sum(t.status == trial_module.TrialStatus.COMPLETED
               for t in oracle.trials.values())
    running = sorted((t.trial_id, tuner_id) for tuner_id, t in
                     list(oracle.ongoing_trials.items()))
    head = f"Chief: {done}/{total} trials finished"
    if running:
        return (done, running), head + "; waiting for " + ", ".join(
            f"trial_{tid} ({tuner_id}, heard from "
            f"{liveness.silent_for(trial_id=tid):.0f} s ago)"
            for tid, tuner_id in running)
    if done < total:
        return (done, running), head + "; waiting for a worker to ask for the next one"
    return (done, running), head


def serve(oracle, total, say, worker_timeout_s=DEFAULT_WORKER_TIMEOUT_S,
          poll_s=1.0):
    """Runs the chief until every trial has ended and every worker has been
    told to stop (or was lost). `say(line)` prints. ValueError when the
    address cannot be listened on (a port in use: another chief)."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    where = address()
    liveness = Liveness()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.so_reuseport", 0)])
    servicer = _servicer(oracle, liveness)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(where)
    except RuntimeError:
        port = 0
    if not port:
        raise ValueError(
            f"cannot listen on {where}: the port is in use (another "
            "keras-egf-sweep chief, or another program); stop it, or give "
            "this sweep's chief and workers another KERASTUNER_ORACLE_PORT")
    server.start()
    say(f"Chief listening on {where}; {worker_timeout_s:g} s without word "
        "from a worker re-queues its trial.")
    last, last_time = None, 0.0
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_s)
            for line in requeue_lost(oracle, liveness, worker_timeout_s):
                say(line)
            key, line = _status(oracle, liveness, total)
            if key != last or time.monotonic() - last_time > STATUS_EVERY_S:
                say(line)
                last, last_time = key, time.monotonic()
    finally:
        server.stop(grace=1)


def wait_for_chief(timeout_s=DEFAULT_CHIEF_TIMEOUT_S):
    """Returns once a chief answers at `address()`; ChiefError naming the
    address if none does within `timeout_s`."""
    import grpc

    where = address()
    channel = grpc.insecure_channel(where)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise ChiefError(
            f"no keras-egf-sweep chief answered at {where} within "
            f"{timeout_s:g} s (KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT): "
            "start the chief (KERASTUNER_TUNER_ID=chief) first, or check "
            "the address and that this machine reaches it") from None
    finally:
        channel.close()


def lost_chief(error, timeout_s):
    """The ChiefError for a worker's gRPC `error` from the chief."""
    code = error.code().name if hasattr(error, "code") else type(error).__name__
    return ChiefError(
        f"lost the chief at {address()} ({code}: no answer within "
        f"{timeout_s:g} s): finished trials are kept; start the chief again, "
        "then this worker")


class BoundedStub:
    """A Keras Tuner OracleStub whose calls wait at most `timeout_s` for the
    chief (Keras Tuner waits an hour)."""

    def __init__(self, stub, timeout_s):
        self._stub = stub
        self._timeout_s = timeout_s

    def __getattr__(self, name):
        call = getattr(self._stub, name)

        def bounded(request, **kwargs):
            return call(request, **{**kwargs, "timeout": self._timeout_s})

        return bounded


class Heartbeat:
    """Tells the chief every `every_s` seconds, from a thread, that this
    worker still runs `trial_id` (a GetTrial request)."""

    def __init__(self, stub, trial_id, every_s=DEFAULT_HEARTBEAT_S):
        from keras_tuner.src import protos

        self._request = protos.get_service().GetTrialRequest(trial_id=trial_id)
        self._stub = stub
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"heartbeat-{trial_id}")
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self._every_s):
            try:
                self._stub.GetTrial(self._request, timeout=self._every_s)
            except Exception:  # the main thread's next call reports a lost chief
                pass

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=self._every_s + 1)
