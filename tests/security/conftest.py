"""The security tests reuse the training tests' small real video set."""

from tests.train.conftest import video_set  # noqa: F401 (a pytest fixture)
