"""The job service: what a job is (spec, status, lifecycle), where it is kept (store,
migrations, artifacts), and how it runs (supervisor, executors, worker, leases).

Nothing here speaks HTTP: the routes in :mod:`tunesmith.api` call into it.
"""
