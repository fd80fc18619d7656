# Sourced by run.sh and bench-pool.sh.

# Prints the address a daas-server started in the background (pid PID, its
# stdout in OUT) announces; fails when it exits first or says nothing for 30 s.
listening_address() { # OUT PID
  local addr
  for _ in $(seq 300); do
    addr=$(sed -n 's/^daas-server listening on //p' "$1")
    if [[ -n $addr ]]; then
      echo "$addr"
      return 0
    fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
