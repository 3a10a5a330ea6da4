"""The load benchmark behind `python manage.py benchmark load` (`make loadtest`).

- `stack`: a scratch PostgreSQL database, gunicorn and two Celery workers on loopback, with
  production settings, started and torn down around one measurement;
- `prepare`: run in a child process on the scratch database (migrate, demo content, a token);
- `clients`: the load generator itself (threads and http.client, standard library only);
- `writes`: the check that every write the server acknowledged is in the database.

Nothing here imports torch: the workers do, in their own processes.
"""
