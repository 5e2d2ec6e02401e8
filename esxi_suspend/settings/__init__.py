"""The settings: every key with its default, the model a run gets, each value's parser, the
problems a file has (all reported together), and the reading of the env file.

May import: the spine's bottom only (errors, clock). Everything else imports it.

    catalog.py     every setting written once: key, default, aliases, text; the env template
    model.py       frozen dataclasses a run knows once the file is read; every key and default
    values.py      one setting's text to its value, or a ValueError with the fix (pure)
    problems.py    a Problem in the file and the reader that records one per bad value
    validation.py  what each setting must be, and what a shutdown does when it is not
    envfile.py     the env file read once (python-dotenv), validated whole
"""
