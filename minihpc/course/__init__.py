"""The course module's cores and instructor demos, run and checked on the cluster
(the material itself, what lands on /shared, is in lab/)."""
