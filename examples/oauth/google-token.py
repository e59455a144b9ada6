#!/usr/bin/env python3
"""Prints a Gmail access token for one user, from a service account with domain-wide
delegation (scope https://mail.google.com/). A token-command for mailshift:

    token-command = "python3 examples/oauth/google-token.py --key sa.json {user}"

Needs `pip install google-auth requests`. Prints only the token (stdout); errors go to
stderr.
"""
import argparse

from google.auth.transport.requests import Request
from google.oauth2 import service_account

parser = argparse.ArgumentParser()
parser.add_argument("--key", required=True, help="the service account's JSON key file")
parser.add_argument("user", help="the mailbox to act as (user@your-domain)")
args = parser.parse_args()

credentials = service_account.Credentials.from_service_account_file(
    args.key, scopes=["https://mail.google.com/"], subject=args.user
)
credentials.refresh(Request())
print(credentials.token)
