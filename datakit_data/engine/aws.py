"""botocore and awscli as datakit itself uses them: the one module outside the AWS
CLI's process that reaches into their internals (tests/test_engine.py holds each
one we rely on to a test of its own).
"""
import logging
from types import ModuleType
from typing import Any, Callable


def botocore() -> ModuleType:
    """The botocore that the bundled awscli carries, with the submodules we use.

    awscli 1.44+ carries its own botocore and, once imported, serves it as the
    top-level `botocore` (its modules use that name, so their classes do too).
    Imported when first needed: loading awscli costs about 80 ms that most runs
    never need.
    """
    import awscli  # noqa: F401
    import botocore as served
    import botocore.config  # noqa: F401
    import botocore.configloader  # noqa: F401
    import botocore.exceptions  # noqa: F401
    import botocore.session  # noqa: F401

    # The CLI is quiet about where it found credentials; so are we.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # A refresh that fails (an expired SSO login) is logged with its traceback, and then
    # raised: the one line failures.py makes of it is enough (-vv shows it all).
    shown = [handler.level for handler in logging.getLogger().handlers if not isinstance(handler, logging.FileHandler)]
    if not shown or min(shown) > logging.DEBUG:
        for name in ("botocore.credentials", "botocore.tokens"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return served


def session(profile: str | None, *, text_times: bool = False) -> Any:
    """A botocore session for a profile; with ``text_times``, its answers keep
    timestamps as the text S3 sent (only compared as text: parsing 10,000 of them
    costs a second)."""
    made = botocore().session.Session(profile=profile)
    if text_times:
        made.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return made


def s3_config(profile: str | None) -> dict:
    """The ``s3 =`` settings of a profile in the user's AWS config, as the AWS CLI reads them."""
    found = botocore().session.Session(profile=profile).get_scoped_config().get("s3")
    return found if isinstance(found, dict) else {}


def transfer_config(s3: dict) -> dict:
    """The AWS CLI's transfer settings (sizes in bytes) from ``s3 =`` settings; raises
    ValueError on a value the AWS CLI refuses."""
    botocore()
    from awscli.customizations.s3.transferconfig import InvalidConfigError, RuntimeConfig

    try:
        return RuntimeConfig().build_config(**s3)
    except InvalidConfigError as err:
        raise ValueError(str(err)) from None


def parse_config(path: str) -> dict:
    """An AWS config file as botocore parses it (raises botocore's ConfigParseError)."""
    return botocore().configloader.raw_config_parse(path)


def read_pages_first(client: Any, read: Callable[[dict, dict], None], operation: str = "ListObjectsV2") -> None:
    """Have ``read(response_dict, customized_response_dict)`` see each answer to
    ``operation`` before botocore looks at it.

    botocore's first look at every S3 answer (``_handle_200_error``) parses the whole
    body with ElementTree to find an error sent with status 200: 1.9 ms for a page of
    500 objects, more than reading them. Run after ``read``, it parses what is left
    of the page (the objects cut out) and still finds an error page, or a page cut
    short by the network (an unfinished object is never cut out). Where this botocore
    has no such handler, ``read`` runs after botocore's handlers.
    """
    events = client.meta.events
    look = getattr(getattr(botocore(), "handlers", None), "_handle_200_error", None)
    if look is None:
        events.register(f"before-parse.s3.{operation}",
                        lambda response_dict, customized_response_dict, **_: read(response_dict,
                                                                                 customized_response_dict))
        return
    events.unregister("before-parse.s3.*", look)

    def before_parse(operation_model: Any, response_dict: dict, **kwargs: Any) -> None:
        if operation_model.name == operation and "customized_response_dict" in kwargs:
            read(response_dict, kwargs["customized_response_dict"])
        look(operation_model=operation_model, response_dict=response_dict, **kwargs)

    events.register_first("before-parse.s3.*", before_parse)


def credential_expiry(profile: str | None) -> tuple[Any, str]:
    """(when the profile's credentials expire, as an aware datetime, or None when they do
    not; how they were found: "sso", "assume-role", "custom-process", "env", ...)."""
    found = session(profile).get_credentials()
    if found is None:
        return None, ""
    # RefreshableCredentials keeps its expiry privately (no public accessor in botocore).
    expiry = getattr(found, "_expiry_time", None)
    return expiry, str(getattr(found, "method", "") or "")
