pytest_plugins = [
    "tests.fix_pg",
    "tests.fix_moto",
    "tests.fix_dynamodb",
    "tests.fix_awops",
    "tests.fix_faultproxy",
    "tests.fix_pgbackrest",
    "tests.fix_browser",
]
