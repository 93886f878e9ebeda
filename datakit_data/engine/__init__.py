"""The transfer engine: the AWS CLIs datakit drives, and everything that touches
awscli's or botocore's internals.

- cli.py: the engine push and pull call (``open_engine``): the bundled AWS CLI v1
  or another AWS CLI (``DATAKIT_DATA_AWS``, e.g. AWS CLI v2), what each can do, and
  the events each run reports;
- plugin.py: the hooks datakit adds to either CLI (standard library only);
- launcher.py: the process the bundled AWS CLI runs in;
- aws.py: botocore and awscli as datakit itself uses them (clients, the AWS
  config, transfer settings).

Nothing here is imported by this file: the launcher imports the plugin alone.
"""
