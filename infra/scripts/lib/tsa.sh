# shellcheck shell=bash
# RFC 3161 time-stamping authority for tests: infra/tsa/tsa_server.py (Python standard library)
# on http://$FLK_BIND_HOST:$FLK_TSA_PORT/, each time-stamp signed by `openssl ts -reply`.
# Sourced by stack.sh after lib/common.sh.
#
# The first start creates, with the openssl CLI, under $TSA_STATE (kept across restarts; only
# missing files are created, `stack.sh reset tsa` deletes them):
#   ca.key, ca.pem     self-signed test CA ($FLK_TSA_KEY_ALG: ec = ECDSA P-256, rsa = RSA 2048)
#   tsa.key, tsa.pem   TSA signing key and certificate issued by that CA
#                      (extendedKeyUsage critical,timeStamping; keyUsage digitalSignature)
#   tsa.cnf            `openssl ts` configuration, tsaserial its serial number file
# Clients verify a reply with:
#   openssl ts -verify -in r.tsr -queryfile q.tsq -CAfile "$FLK_TSA_CA_FILE" -untrusted "$FLK_TSA_CERT_FILE"

TSA_STATE="$FLK_STACK_DIR/tsa"
TSA_PID="$TSA_STATE/tsa.pid"
TSA_LOG="$TSA_STATE/tsa.log"
TSA_CONFIG="$TSA_STATE/tsa.cnf"
TSA_CA_KEY="$TSA_STATE/ca.key"
TSA_CA_CERT="$TSA_STATE/ca.pem"
TSA_KEY="$TSA_STATE/tsa.key"
TSA_CERT="$TSA_STATE/tsa.pem"
TSA_SERIAL="$TSA_STATE/tsaserial"
TSA_SERVER="$FLK_REPO_ROOT/infra/tsa/tsa_server.py"
# Substring of the server's command line, to recognise our process behind a pid file.
TSA_MATCH="tsa_server.py"
# The interpreter itself (not a version-manager shim), set by tsa_install.
TSA_PYTHON=""

tsa_install() {
  flk_need_cmd python3:python3 openssl:openssl
  [[ -f "$TSA_SERVER" ]] || flk_die "tsa: $TSA_SERVER is missing"
  [[ -n "$TSA_PYTHON" ]] && return 0
  TSA_PYTHON="$(python3 -c 'import sys; assert sys.version_info >= (3, 7); print(sys.executable)' 2>/dev/null)" \
    || flk_die "tsa: $TSA_SERVER needs Python >= 3.7 ($(command -v python3) is $(python3 -V 2>&1))"
}

tsa_running() {
  flk_pid_alive "$TSA_PID" "$TSA_MATCH"
}

# openssl ARGS..., output to $TSA_STATE/keygen.log; dies with its tail on failure.
_tsa_openssl() {
  local what="$1"; shift
  printf '\n==== %s %s: openssl %s\n' "$(date -Is)" "$what" "$*" >>"$TSA_STATE/keygen.log"
  openssl "$@" </dev/null >>"$TSA_STATE/keygen.log" 2>&1 \
    || { flk_tail_log "$TSA_STATE/keygen.log" 20; flk_die "tsa: $what failed (openssl $1)"; }
}

# _tsa_genkey OUT WHAT: a new private key of type $FLK_TSA_KEY_ALG, mode 600.
_tsa_genkey() {
  local out="$1" what="$2"
  case "$FLK_TSA_KEY_ALG" in
    ec) _tsa_openssl "$what" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out.tmp" ;;
    rsa) _tsa_openssl "$what" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$out.tmp" ;;
    *) flk_die "tsa: FLK_TSA_KEY_ALG must be 'ec' or 'rsa' (got '$FLK_TSA_KEY_ALG')" ;;
  esac
  chmod 600 "$out.tmp"
  mv "$out.tmp" "$out"
}

# Extensions of the two certificates (openssl x509v3 config).
_tsa_ext_config() {
  cat <<'EOF'
# Written by infra/scripts/stack.sh (lib/tsa.sh) at each start; used only to create certificates.
[ req ]
distinguished_name     = req_dn
prompt                 = no

[ req_dn ]
CN                     = unused (the subject comes from -subj)

[ ca_ext ]
basicConstraints       = critical,CA:TRUE
keyUsage               = critical,keyCertSign,cRLSign
subjectKeyIdentifier   = hash

[ tsa_ext ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature
extendedKeyUsage       = critical,timeStamping
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
}

# The `openssl ts` configuration (see `man openssl-ts`, section CONFIGURATION FILE OPTIONS).
_tsa_ts_config() {
  cat <<EOF
# Written by infra/scripts/stack.sh (lib/tsa.sh) when missing; kept across restarts.
# Used by infra/tsa/tsa_server.py: openssl ts -reply -config $TSA_CONFIG ...

[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
serial              = $TSA_SERIAL
crypto_device       = builtin
signer_cert         = $TSA_CERT
# Added after the signer's certificate to a reply whose query sets certReq.
certs               = $TSA_CA_CERT
signer_key          = $TSA_KEY
signer_digest       = sha256
default_policy      = 1.2.3.4.1
other_policies      = 1.2.3.4.5.6, 1.2.3.4.5.7
digests             = sha256, sha384, sha512
accuracy            = secs:1
ordering            = no
tsa_name            = yes
ess_cert_id_chain   = no
ess_cert_id_alg     = sha256
EOF
}

# Create whatever is missing of: CA, TSA key and certificate, ts config, serial file.
_tsa_ensure_pki() {
  mkdir -p "$TSA_STATE"
  local ext="$TSA_STATE/x509ext.cnf" days="$FLK_TSA_CERT_DAYS"
  _tsa_ext_config >"$ext"
  if [[ ! -s "$TSA_CA_CERT" ]]; then
    flk_log "tsa: creating test CA $TSA_CA_CERT ($FLK_TSA_KEY_ALG, ${days} days)"
    _tsa_genkey "$TSA_CA_KEY" "CA key"
    _tsa_openssl "CA certificate" req -new -x509 -key "$TSA_CA_KEY" -sha256 -days "$days" \
      -subj "/O=FLK local stack/CN=FLK Test TSA Root CA" -set_serial "0x$(openssl rand -hex 16)" \
      -config "$ext" -extensions ca_ext -out "$TSA_CA_CERT.tmp"
    mv "$TSA_CA_CERT.tmp" "$TSA_CA_CERT"
    # A TSA certificate from an older CA would no longer verify.
    rm -f "$TSA_CERT" "$TSA_KEY"
  fi
  if [[ ! -s "$TSA_CERT" || ! -s "$TSA_KEY" ]]; then
    [[ -s "$TSA_CA_KEY" ]] || flk_die "tsa: $TSA_CA_KEY is missing, cannot issue a TSA certificate
  (run 'stack.sh reset tsa' to create a new CA, or put the CA key back)"
    flk_log "tsa: issuing TSA certificate $TSA_CERT"
    _tsa_genkey "$TSA_KEY" "TSA key"
    _tsa_openssl "TSA certificate request" req -new -key "$TSA_KEY" -sha256 \
      -subj "/O=FLK local stack/CN=FLK Test TSA" -out "$TSA_STATE/tsa.csr"
    _tsa_openssl "TSA certificate" x509 -req -in "$TSA_STATE/tsa.csr" -sha256 -days "$days" \
      -CA "$TSA_CA_CERT" -CAkey "$TSA_CA_KEY" -set_serial "0x$(openssl rand -hex 16)" \
      -extfile "$ext" -extensions tsa_ext -out "$TSA_CERT.tmp"
    mv "$TSA_CERT.tmp" "$TSA_CERT"
    rm -f "$TSA_STATE/tsa.csr"
  fi
  if [[ ! -s "$TSA_CONFIG" ]]; then
    _tsa_ts_config >"$TSA_CONFIG.tmp"
    mv "$TSA_CONFIG.tmp" "$TSA_CONFIG"
  fi
  [[ -s "$TSA_SERIAL" ]] || printf '01\n' >"$TSA_SERIAL"
  # Cheap sanity check (catches hand-edited or mismatched files).
  openssl verify -CAfile "$TSA_CA_CERT" -purpose timestampsign "$TSA_CERT" >/dev/null 2>&1 \
    || flk_die "tsa: $TSA_CERT does not verify against $TSA_CA_CERT for time-stamping
  ($(openssl verify -CAfile "$TSA_CA_CERT" -purpose timestampsign "$TSA_CERT" 2>&1 | tail -n1))
  run 'stack.sh reset tsa' to create new keys"
  openssl x509 -in "$TSA_CERT" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 \
    || flk_warn "tsa: $TSA_CERT expires within 30 days ('stack.sh reset tsa' makes new keys)"
}

# True when GET /health answers 200.
_tsa_health_ok() {
  "$TSA_PYTHON" - "$FLK_BIND_HOST" "$FLK_TSA_PORT" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

tsa_start() {
  tsa_install
  if tsa_running; then
    flk_log "tsa: already running (pid $(flk_pid_of "$TSA_PID"), http://$FLK_BIND_HOST:$FLK_TSA_PORT/)"
    return 0
  fi
  flk_clear_stale_pid "$TSA_PID" "$TSA_MATCH"
  flk_require_free_port "$FLK_TSA_PORT" "tsa"
  _tsa_ensure_pki
  printf '\n==== %s starting tsa_server.py\n' "$(date -Is)" >>"$TSA_LOG"
  flk_spawn "$TSA_PID" "$TSA_LOG" "$TSA_PYTHON" "$TSA_SERVER" --host "$FLK_BIND_HOST" \
    --port "$FLK_TSA_PORT" --config "$TSA_CONFIG" --openssl "$(command -v openssl)"
  local deadline=$((SECONDS + FLK_START_TIMEOUT))
  until _tsa_health_ok 2>/dev/null; do
    tsa_running || { flk_tail_log "$TSA_LOG" 30; flk_die "tsa: tsa_server.py exited during start-up"; }
    ((SECONDS < deadline)) || { flk_tail_log "$TSA_LOG" 30; flk_die "tsa: no answer on http://$FLK_BIND_HOST:$FLK_TSA_PORT/health after ${FLK_START_TIMEOUT}s"; }
    sleep 0.2
  done
  flk_log "tsa: ready on http://$FLK_BIND_HOST:$FLK_TSA_PORT/ (CA $TSA_CA_CERT)"
}

tsa_stop() {
  flk_stop_pidfile "$TSA_PID" "$TSA_MATCH" "tsa" 20
}

tsa_status() {
  if tsa_running && flk_port_listening "$FLK_TSA_PORT"; then
    printf '%-10s running  http://%s:%s/ (RFC 3161, pid %s, CA %s)\n' tsa "$FLK_BIND_HOST" \
      "$FLK_TSA_PORT" "$(flk_pid_of "$TSA_PID")" "$TSA_CA_CERT"
  else
    printf '%-10s stopped  http://%s:%s/\n' tsa "$FLK_BIND_HOST" "$FLK_TSA_PORT"
    return 1
  fi
}

tsa_state_dirs() { printf '%s\n' "$TSA_STATE"; }

# Export lines for clients, printed only while the TSA runs (like otel_env_lines).
tsa_env_lines() {
  tsa_running || return 0
  cat <<EOF
export FLK_TSA_URL=http://$FLK_BIND_HOST:$FLK_TSA_PORT/
export FLK_TSA_CA_FILE=$TSA_CA_CERT
export FLK_TSA_CERT_FILE=$TSA_CERT
EOF
}
