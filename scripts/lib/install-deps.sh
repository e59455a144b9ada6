# Shared by .ci/run, scripts/demo and scripts/bench (sourced, not run): installs the Debian
# packages the private test/demo/bench Dovecots and tools need, only when missing.
#   need_packages CMD:PACKAGE ...   e.g. need_packages dovecot:dovecot-imapd openssl:openssl
# A package's postinst must not start a system dovecot (ours run privately on loopback):
# a policy-rc.d that refuses service starts is in place while apt runs, then removed.

need_packages() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd="${pair%%:*}"
    pkg="${pair#*:}"
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then
      missing+=("$pkg")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local planted=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    planted=1
  fi
  echo "installing: ${missing[*]}" >&2
  local status=0
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; } || status=$?
  [ "$planted" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  return "$status"
}
