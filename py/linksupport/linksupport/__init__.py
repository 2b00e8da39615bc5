"""What account-link's tests, benchmarks and demo share (not part of the product): `procs` (start a program,
wait until it says where it listens, stop it with a grace period), `services` (moto, link-receiver,
PostgreSQL) and `runtime_api` (a Lambda Runtime API emulator)."""
