"""Study jobs and who runs them: the queue, the threads, the durable work state, the cluster.

Holds the study job (:mod:`~scintiseg.work.jobs`: every image of a stable study through
the pipeline, the result recorded), which images are worth it
(:mod:`~scintiseg.work.selection`), the worker interface and the local worker
(:mod:`~scintiseg.work.worker`, :mod:`~scintiseg.work.threads`), the cluster's worker and
work table (:mod:`~scintiseg.work.cluster`, :mod:`~scintiseg.work.pgwork`), the stability
tracker (:mod:`~scintiseg.work.stability`), the durable work state
(:mod:`~scintiseg.work.workstate`), and one job's run with its retries, failures and the
start-up scan (:mod:`~scintiseg.work.runner`, :mod:`~scintiseg.work.retries`,
:mod:`~scintiseg.work.failures`, :mod:`~scintiseg.work.recovery`).

May import: :mod:`scintiseg.pipeline`, :mod:`scintiseg.models`, :mod:`scintiseg.dicom`,
:mod:`scintiseg.core`; psycopg (the cluster).
"""
