"""The application layer: the `visiondock` command line, the demo, the local launcher and the
folder importer. It drives the services over HTTP (and runs the trainer in process for
`visiondock train`); nothing below it imports it."""
