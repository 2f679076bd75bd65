// Command vcbt-lab is the vSphere lab the vcbt tests run against: govmomi's vcsim (VPX model)
// extended with what vcsim lacks and vcbt depends on.
//
// Vocabulary (see docs/lab.md for the user-facing description):
//   - disk: one VirtualDisk device of a lab VM, identified by (VM name, device key).
//   - state: one version of a disk's contents, a full sparse raw file on the simulated
//     datastore plus a VMware descriptor naming it. A disk is a chain of states: the oldest
//     is the base disk, each snapshot freezes one state, and the last one is "live" (the only
//     state guest writes touch).
//   - epoch: the CBT tracking identity of a disk (the part of a ChangeId before "/"). It
//     starts when CBT becomes active on the disk and ends when CBT is disabled.
//   - sequence: a counter per disk; every block remembers the sequence of its last guest
//     write, every snapshot freezes those per-block sequences, so a ChangeId "<epoch>/<n>"
//     selects the blocks whose last write is newer than n.
//   - unit: the lab's internal tracking granularity (trackUnitBytes); CBT replies are
//     rounded out to cbtBlockBytes, which is configurable and a multiple of the unit.
//
// The program prints one JSON line (the lab description) on stdout when ready, writes the
// same to <state>/lab.json, and runs until SIGINT/SIGTERM or until its stdin reaches EOF
// (the parent went away). On the way out it kills its nbdkit children and removes the
// simulated datastores.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	stateDir := flag.String("state", "", "directory for the lab's datastores, sockets and lab.json (required)")
	diskSizes := flag.String("disk-sizes", "", "comma-separated byte sizes of DC0_H0_VM0's disks (multiples of 1024)")
	otherDiskBytes := flag.Int64("other-disk-bytes", 4*1024*1024, "capacity of the single disk of every other VM")
	removeState := flag.Bool("remove-state-on-exit", false, "remove the whole state directory on exit (the caller created it for this lab)")
	watchStdin := flag.Bool("watch-stdin", true, "exit when stdin reaches EOF (the parent died)")
	flag.Parse()
	if *stateDir == "" {
		log.Fatal("vcbt-lab: --state DIR is required")
	}
	sizes := defaultVm0DiskBytes
	if *diskSizes != "" {
		sizes = nil
		for _, s := range strings.Split(*diskSizes, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil || n <= 0 || n%1024 != 0 {
				log.Fatalf("vcbt-lab: --disk-sizes: %q is not a positive multiple of 1024", s)
			}
			sizes = append(sizes, n)
		}
	}
	if *otherDiskBytes <= 0 || *otherDiskBytes%1024 != 0 {
		log.Fatalf("vcbt-lab: --other-disk-bytes must be a positive multiple of 1024")
	}
	abs, err := filepath.Abs(*stateDir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		log.Fatal(err)
	}

	l, err := startLab(abs, sizes, *otherDiskBytes)
	if err != nil {
		log.Fatalf("vcbt-lab: start: %v", err)
	}
	info, _ := json.Marshal(l.info)
	if err := os.WriteFile(filepath.Join(abs, "lab.json"), append(info, '\n'), 0o600); err != nil {
		l.stop()
		log.Fatalf("vcbt-lab: write lab.json: %v", err)
	}
	fmt.Println(string(info))

	// Our parent may be gone with the read ends of stdout/stderr: a log line must not kill
	// the lab (Go exits on SIGPIPE for fd 1 and 2 unless the signal is being notified).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	done := make(chan string, 2)
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() { done <- (<-signals).String() }()
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
			done <- "stdin closed"
		}()
	}
	reason := <-done
	log.Printf("vcbt-lab: stopping (%s)", reason)
	l.stop()
	_ = os.Remove(filepath.Join(abs, "lab.json"))
	if *removeState {
		_ = os.RemoveAll(abs)
	}
}
