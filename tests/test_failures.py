"""failures.py: why a request failed, in one line."""
from datakit_data import failures
from datakit_data.engine import aws
from datakit_data.exceptions import ConfigError, Interrupted, SkippedFiles, SyncError

from helpers import make_settings


def test_failures_are_explained_in_one_line():
    s = make_settings(profile="team")
    nobucket = failures.explain_failure(1, ["fatal error: An error occurred (NoSuchBucket) when ..."], s, "push")
    assert 'bucket "bkt" does not exist' in str(nobucket)
    refused = failures.explain_failure(1, ["fatal error: An error occurred (InvalidAccessKeyId) ..."], s, "pull")
    assert '"team"' in str(refused) and "refused the credentials" in str(refused)
    profile = failures.explain_failure(255, ["", "The config profile (team) could not be found"], s, "push")
    assert isinstance(profile, ConfigError) and '"team" was not found' in str(profile)
    skipped = failures.explain_failure(2, ["warning: Skipping file data/x y.csv. File does not exist."], s, "push")
    assert isinstance(skipped, SkippedFiles) and "data/x y.csv (file does not exist)" in str(skipped)
    assert isinstance(failures.explain_failure(130, [], s, "pull"), Interrupted)
    other = failures.explain_failure(1, ["fatal error: something odd"], s, "push")
    assert "the AWS CLI exited with code 1: something odd" in str(other)
    for error in (nobucket, refused, profile, skipped, other):
        assert "\n" not in str(error)
    # The reason travels as a fact, not to be cut back out of the message.
    assert nobucket.reason.startswith('bucket "bkt" does not exist on AWS S3.')
    errors = aws.botocore().exceptions
    gone = errors.ClientError({"Error": {"Code": "NoSuchBucket", "Message": "something odd"}}, "ListObjectsV2")
    in_process = failures.explain_error(gone, s, "list")
    assert str(in_process).startswith('Listing s3://bkt/proj/ failed: bucket "bkt" does not exist')


def test_in_process_failures_are_told_apart_by_their_type():
    """botocore's exceptions, as botocore raises them: classified by type and code, never by their words."""
    s = make_settings(profile="team", endpoint="http://127.0.0.1:9")
    errors = aws.botocore().exceptions
    url = "http://127.0.0.1:9/bkt"
    cases = [
        (errors.NoCredentialsError(), SyncError, "no AWS credentials found"),
        (errors.ProfileNotFound(profile="team"), ConfigError, 'AWS profile "team" was not found'),
        (errors.EndpointConnectionError(endpoint_url=url), SyncError, "could not connect to http://127.0.0.1:9"),
        (errors.ConnectTimeoutError(endpoint_url=url), SyncError, "could not connect to http://127.0.0.1:9"),
        (errors.ReadTimeoutError(endpoint_url=url), SyncError, "accepted the connection but did not answer"),
        (errors.ProxyConnectionError(proxy_url="http://proxy:3128"), SyncError, "through the proxy"),
        (errors.ClientError({"Error": {"Code": "AccessDenied"}}, "ListObjectsV2"), SyncError,
         'access denied to bucket "bkt" for AWS profile "team"'),
        (errors.ClientError({"Error": {"Code": "SignatureDoesNotMatch"}}, "ListObjectsV2"), SyncError,
         'refused the credentials of AWS profile "team" (SignatureDoesNotMatch)'),
        (errors.ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                            "ListObjectsV2"), SyncError, "Please reduce your request rate"),
    ]
    for err, kind, words in cases:
        explained = failures.explain_error(err, s, "delete")
        assert type(explained) is kind and words in str(explained), (err, str(explained))
        assert str(explained).startswith("Deleting from s3://bkt/proj/ failed: ") and "\n" not in str(explained)
    # A message that merely quotes another failure's words is not taken for it.
    odd = errors.ClientError({"Error": {"Code": "InternalError", "Message": "Unable to locate credentials"}}, "X")
    assert "no AWS credentials found" not in str(failures.explain_error(odd, s, "list"))


def test_of_a_read_timeout_and_a_refused_connection_the_later_is_explained():
    s = make_settings()
    hung_then_gone = ["Read timeout on endpoint URL: x", "Could not connect to the endpoint URL: x"]
    assert "could not connect" in str(failures.explain_failure(1, hung_then_gone, s, "push"))
    assert "did not answer" in str(failures.explain_failure(1, hung_then_gone[::-1], s, "push"))


def test_every_credential_failure_is_one_line_that_says_what_to_do():
    """SSO, login sessions, assumed roles, credential processes and expired session
    tokens, raised in-process or printed by the AWS CLI."""
    s = make_settings(profile="team")
    errors = aws.botocore().exceptions
    in_process = [
        (errors.SSOTokenLoadError(error_msg="Token for x does not exist"), "`aws sso login --profile team`"),
        (errors.UnauthorizedSSOTokenError(), "`aws sso login --profile team`"),
        (errors.TokenRetrievalError(provider="sso", error_msg="expired"), "`aws sso login --profile team`"),
        (errors.CredentialRetrievalError(provider="custom-process", error_msg="exit 1"),
         'the credential_process of profile "team" failed'),
        (errors.PartialCredentialsError(provider="shared-credentials-file", cred_var="aws_secret_access_key"),
         "missing aws_secret_access_key"),
        (errors.RefreshWithMFAUnsupportedError(), "needs an MFA code"),
        (errors.ClientError({"Error": {"Code": "AccessDenied"}}, "AssumeRole"), "could not take on its role (AccessDenied)"),
        (errors.ClientError({"Error": {"Code": "ExpiredToken"}}, "ListObjectsV2"),
         'the temporary credentials of profile "team" have expired (ExpiredToken)'),
        (errors.ClientError({"Error": {"Code": "ExpiredToken"}}, "AssumeRole"), "have expired (ExpiredToken)"),
    ]
    for err, says in in_process:
        explained = failures.explain_error(err, s, "list")
        assert says in str(explained) and "\n" not in str(explained), (err, str(explained))
    printed = [
        ("Error loading SSO Token: Token for https://x.awsapps.com/start does not exist", "`aws sso login --profile team`"),
        ("The SSO session associated with this profile has expired or is otherwise invalid.", "aws sso login"),
        ("Error when retrieving credentials from custom-process: boom", "credential_process"),
        ("An error occurred (ExpiredToken) when calling the PutObject operation: expired", "have expired (ExpiredToken)"),
        ("An error occurred (AccessDenied) when calling the AssumeRole operation: no", "could not take on its role"),
    ]
    for line, says in printed:
        explained = failures.explain_failure(255, [line], s, "push")
        assert says in str(explained) and "\n" not in str(explained), (line, str(explained))
