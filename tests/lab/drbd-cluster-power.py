#!/usr/bin/env python3
"""The power switch of the full-stack DRBD lab (drbd-cluster.sh).

Serves DIR/fence.sock. Each node's emulator connects to it with the
virtio-serial port the node's fence agent (fence_vgdc) writes to; a request
is one line "ACTION NODE" (off, on, reboot, status), the answer one line:
"ok", "on", "off" or "error ...". Every action is recorded, with the wall
clock, in DIR/power-actions.log: the tests read there that fencing happened.

A node whose file DIR/NODE.held-off exists is not powered on (by "on" or
by the second half of "reboot") until the test removes that file: a crashed
server takes minutes to come back, and a test that proves a failover must
not race a node that reboots faster than the survivor takes over. The
fencing itself (the power cut) is done and answered at once.
"""
import os
import socket
import subprocess
import sys
import threading
import time

run_dir, lab_script = sys.argv[1], sys.argv[2]
sock_path = os.path.join(run_dir, "fence.sock")
record_lock = threading.Lock()


def record(line):
    with record_lock, open(os.path.join(run_dir, "power-actions.log"), "a") as log:
        log.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def lab(*args):
    # Bounded: booting a node returns once its emulator is started.
    done = subprocess.run(["sh", lab_script, *args], capture_output=True, text=True, timeout=60)
    return done.returncode, (done.stdout + done.stderr).strip()


def boot_when_released(node):
    held = os.path.join(run_dir, f"{node}.held-off")
    while os.path.exists(held):
        time.sleep(0.5)
    rc, out = lab("boot", run_dir, node)
    record(f"boot {node} rc={rc} {out}")


def act(action, node):
    if node not in ("alpha", "beta"):
        return f"error no node {node!r}"
    if action == "status":
        return lab("status", run_dir, node)[1] or "error no status"
    steps = {"off": ["kill"], "on": ["boot"], "reboot": ["kill", "boot"]}.get(action)
    if steps is None:
        return f"error unknown action {action!r}"
    for step in steps:
        if step == "boot" and os.path.exists(os.path.join(run_dir, f"{node}.held-off")):
            record(f"boot {node} held off until the test releases it")
            threading.Thread(target=boot_when_released, args=(node,), daemon=True).start()
            continue
        rc, out = lab(step, run_dir, node)
        record(f"{step} {node} rc={rc} {out}")
        if rc != 0:
            return f"error {step}: {out}"
    return "ok"


def serve(conn):
    with conn, conn.makefile("rw") as stream:
        for line in stream:
            words = line.split()
            if len(words) != 2:
                answer = "error bad request"
            else:
                record(f"request {words[0]} {words[1]}")
                try:
                    answer = act(words[0], words[1])
                except Exception as e:  # a failed step is an answer, never a dead switch
                    answer = f"error {e}"
            stream.write(answer + "\n")
            stream.flush()


with open(os.path.join(run_dir, "power.pid"), "w") as pid_file:
    pid_file.write(f"{os.getpid()}\n")
if os.path.exists(sock_path):
    os.unlink(sock_path)
server = socket.socket(socket.AF_UNIX)
server.bind(sock_path)
server.listen(4)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
