"""Kubernetes Events on denied and warned objects (issue 12 point 8): the real `sigil serve
--kube --events` over TLS, a fake API server speaking the real wire format
(tests/support/fake_kube.py: POST /api/v1/namespaces/<ns>/events with the API server's checks),
images signed or not in the real distribution registry.

The contract under test:
  - a denied Pod CREATE with a controller gets one Warning Event ImageNotVerified on the
    controller (ownerReference kind, name, uid), whose message is the denial's one line and
    names the Pod; a bare Pod's Event names the Pod itself (no uid: it never exists); a warned
    bare Pod's Event names it with its uid, a warned controller's Pods one Event on the
    controller; a dry run gets none;
  - 100 identical denials make one Event (the others are counted as rate_limited);
  - an API server that does not answer the Event POST does not slow admissions;
  - hostile names (longer than Kubernetes allows) make no Event and no unbounded state.
"""
import time
import unittest
import uuid

import harness
from harness import fixture
import fake_kube
from test_kube import KubeSigil, eventually, pod_review
from test_metrics import scrape_port, value

NS = "ev-team"
W = None


def setUpModule():
    global W
    harness.require_registry()
    harness.sigil_bin()
    W = World()


def tearDownModule():
    if W is not None:
        W.reg.stop()


class World:
    def __init__(self):
        self.reg = harness.RunningRegistry("events")
        self.addr = self.reg.address
        self.keys = harness.Keys(harness.work_dir("events-keys"), [("a", "p256")])
        self.signed = self.reg.push("ev/signed", "v1", "events signed")
        fixture.sign(self.reg.client, "ev/signed", self.signed, self.keys.key("a"))
        self.reg.push("ev/unsigned", "v1", "events unsigned")
        self.reg.push("evwarn/unsigned", "v1", "events warn unsigned")
        d = harness.work_dir("events-policies")
        self.policies = [
            harness.write_policy(d, "ev-enforce", self.addr + "/ev/**",
                                 {"key-a": self.keys.pub("a")}),
            harness.write_policy(d, "ev-warn", self.addr + "/evwarn/**",
                                 {"key-a": self.keys.pub("a")}, mode="warn"),
        ]

    def ref(self, repo):
        return self.reg.ref(repo, "v1")


def owned_pod_review(image, pod, owner, owner_uid, ns=NS, dry_run=False, operation="CREATE"):
    doc = pod_review([image], ns=ns)
    req = doc["request"]
    req["name"] = pod
    req["dryRun"] = dry_run
    req["operation"] = operation
    md = req["object"]["metadata"]
    md["name"] = pod
    md["uid"] = str(uuid.uuid4())
    if owner:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                  "uid": owner_uid, "controller": True,
                                  "blockOwnerDeletion": True}]
    if operation == "UPDATE":
        req["oldObject"] = {"metadata": dict(md), "spec": {"containers": []}}
    return doc


class EventsTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.fk = fake_kube.FakeKube(token="sigil-events-token",
                                    workdir=harness.work_dir("fake-kube-events"))
        cls.fk.start()
        cls.addClassCleanup(cls.fk.stop)
        kubeconfig = cls.fk.write_kubeconfig(
            harness.work_dir("kubeconfig-events") + "/kubeconfig")
        cls.metrics_port = harness.free_port()
        cls.sigil = KubeSigil("events", kubeconfig=kubeconfig, policies=W.policies,
                              extra_args=["--insecure-registry", W.addr, "--events",
                                          "--metrics-listen",
                                          "127.0.0.1:%d" % cls.metrics_port])
        cls.addClassCleanup(cls.sigil.stop)

    def validate(self, doc):
        st, resp = self.sigil.validate(doc, timeout=30)
        self.assertEqual(st, 200, resp)
        return resp

    def events_of(self, name, ns=NS):
        return [e for e in self.fk.events(ns) if e["involvedObject"]["name"] == name]

    def wait_events(self, name, n=1, ns=NS, timeout=20.0):
        ok, evs = eventually(lambda: len(self.events_of(name, ns)) >= n and
                             self.events_of(name, ns), timeout)
        self.assertTrue(ok, "no Event on %s/%s; fake saw %s\n%s" % (
            ns, name, [(r["method"], r["path"], r["code"]) for r in self.fk.requests()[-10:]],
            self.sigil.log_tail()))
        return evs

    def scrape(self):
        return scrape_port(self.metrics_port)[0]

    def test_denied_pod_of_a_replicaset_gets_one_event_on_its_controller(self):
        rs_uid = str(uuid.uuid4())
        resp = self.validate(owned_pod_review(W.ref("ev/unsigned"), "web-5d9f-x7k2p", "web-5d9f",
                                              rs_uid))
        self.assertFalse(resp["allowed"])
        denial = harness.message(resp)
        (ev,) = self.wait_events("web-5d9f")
        self.assertEqual(ev["involvedObject"], {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                "namespace": NS, "name": "web-5d9f",
                                                "uid": rs_uid})
        self.assertEqual(ev["metadata"]["namespace"], NS)
        self.assertEqual(ev["type"], "Warning")
        self.assertEqual(ev["reason"], "ImageNotVerified")
        self.assertEqual(ev["source"], {"component": "sigil"})
        self.assertEqual(ev["reportingComponent"], "sigil")
        self.assertEqual(ev["message"], "Pod web-5d9f-x7k2p denied: " + denial)
        self.assertIn("no signatures found", ev["message"])
        self.assertEqual(ev["count"], 1)
        self.assertEqual(self.events_of("web-5d9f-x7k2p"), [])

    def test_bare_pod_event_names_the_pod_without_uid_and_dry_run_gets_none(self):
        resp = self.validate(owned_pod_review(W.ref("ev/unsigned"), "bare-dry", None, None,
                                              dry_run=True))
        self.assertFalse(resp["allowed"])
        resp = self.validate(owned_pod_review(W.ref("ev/unsigned"), "bare", None, None))
        self.assertFalse(resp["allowed"])
        (ev,) = self.wait_events("bare")
        self.assertEqual(ev["involvedObject"], {"apiVersion": "v1", "kind": "Pod",
                                                "namespace": NS, "name": "bare"})
        self.assertEqual(ev["message"], harness.message(resp))
        # The dry run's review was answered first; its Event would be there by now.
        self.assertEqual(self.events_of("bare-dry"), [])

    def test_warned_admission_event_names_the_object_with_its_uid(self):
        doc = owned_pod_review(W.ref("evwarn/unsigned"), "warned-pod", None, None)
        resp = self.validate(doc)
        self.assertTrue(resp["allowed"])
        self.assertTrue(resp.get("warnings"), resp)
        (ev,) = self.wait_events("warned-pod")
        self.assertEqual(ev["reason"], "ImageVerificationWarning")
        self.assertEqual(ev["type"], "Warning")
        self.assertEqual(ev["involvedObject"]["kind"], "Pod")
        self.assertEqual(ev["involvedObject"]["uid"],
                         doc["request"]["object"]["metadata"]["uid"])
        # With a controller: on the controller, once for all its Pods.
        for i in range(3):
            resp = self.validate(owned_pod_review(W.ref("evwarn/unsigned"), "wpod-%d" % i,
                                                  "warned-rs", "rs-uid-1"))
            self.assertTrue(resp["allowed"])
        (ev,) = self.wait_events("warned-rs")
        self.assertEqual(ev["involvedObject"]["uid"], "rs-uid-1")
        self.assertTrue(ev["message"].startswith("Pod wpod-0 admitted with a warning: "),
                        ev["message"])

    def test_a_burst_of_100_identical_denials_makes_one_event(self):
        before = self.scrape()
        for i in range(100):
            resp = self.validate(owned_pod_review(W.ref("ev/unsigned"), "burst-%d" % i,
                                                  "burst-rs", "burst-uid"))
            self.assertFalse(resp["allowed"])
        self.wait_events("burst-rs")
        ok, _ = eventually(lambda: value(self.scrape(), "sigil_events_total",
                                         result="rate_limited") -
                           value(before, "sigil_events_total", result="rate_limited") >= 99, 10)
        self.assertTrue(ok)
        after = self.scrape()
        self.assertEqual(value(after, "sigil_events_total", result="rate_limited") -
                         value(before, "sigil_events_total", result="rate_limited"), 99)
        self.assertEqual(len(self.events_of("burst-rs")), 1)
        self.assertEqual(len(self.fk.requests(path="/api/v1/namespaces/%s/events" % NS,
                                              method="POST")),
                         len(self.fk.events(NS)))

    def test_a_hanging_api_server_does_not_slow_admissions(self):
        ns = "ev-hang"
        path = "/api/v1/namespaces/%s/events" % ns
        hold = self.fk.hold(path=path, method="POST")
        try:
            resp = self.validate(owned_pod_review(W.ref("ev/unsigned"), "hang-0", "hang-rs-0",
                                                  "u0", ns=ns))
            self.assertFalse(resp["allowed"])
            self.assertTrue(hold.wait_arrived(1, timeout=20), self.sigil.log_tail())
            # The Event POST hangs now; admissions (each a new owner, so each queues an
            # Event) are still answered, and by the verdict, not by a timeout. (Ten in all: a
            # namespace's burst of Events.)
            times = []
            for i in range(1, 10):
                t0 = time.monotonic()
                resp = self.validate(owned_pod_review(W.ref("ev/unsigned"), "hang-%d" % i,
                                                      "hang-rs-%d" % i, "u%d" % i, ns=ns))
                times.append(time.monotonic() - t0)
                self.assertFalse(resp["allowed"])
                self.assertIn("no signatures found", harness.message(resp))
            # One worker, one POST in flight (a second only if the first hit its 10 s deadline).
            self.assertLessEqual(hold.arrived, 2)
            self.assertEqual(self.fk.count(path=path, method="POST"), hold.arrived)
            self.assertEqual(self.fk.events(ns), [])  # none answered yet
            print("admissions while the Event POST hangs: max %.1f ms, median %.1f ms" % (
                max(times) * 1000, sorted(times)[len(times) // 2] * 1000))
        finally:
            hold.release()
        # Released: the queued Events go out.
        self.wait_events("hang-rs-9", ns=ns)

    def test_hostile_long_names_make_no_event(self):
        before = self.scrape()
        long_pod = "p" * 300
        long_owner = "o" * 10000
        resp = self.validate(owned_pod_review(W.ref("ev/unsigned"), long_pod, None, None))
        self.assertFalse(resp["allowed"])
        resp = self.validate(owned_pod_review(W.ref("ev/unsigned"), "ok-pod", long_owner, "u"))
        self.assertFalse(resp["allowed"])
        ok, _ = eventually(lambda: value(self.scrape(), "sigil_events_total", result="invalid") -
                           value(before, "sigil_events_total", result="invalid") >= 2, 10)
        self.assertTrue(ok, self.sigil.log_tail())
        self.assertEqual(self.events_of(long_pod), [])
        self.assertEqual(self.events_of(long_owner), [])
        self.assertTrue(all(len(e["metadata"]["name"]) <= 253 for e in self.fk.events()))


if __name__ == "__main__":
    unittest.main()
