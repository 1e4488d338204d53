package dev.tether.core.session;

import dev.tether.core.protocol.Counters;
import dev.tether.core.protocol.Diagnostic;
import dev.tether.core.protocol.ProcessInfo;
import dev.tether.core.protocol.SessionSnapshot;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The "Tether" tool window's tree, without Swing: a session with its details as children, the
 * same fields as the VS Code panel (target and agent, state, processes, connections, bytes,
 * files and DNS lookups, the doctor's findings, the last errors). {@code icon} names an
 * abstract icon the plugin maps to the platform's.
 */
public final class SessionNodes {
    private SessionNodes() {}

    public enum Icon { STARTING, READY, FAILED, ENDED, TARGET, PROCESS, PROCESS_SKIPPED, CONNECTIONS, BYTES, FILES,
        DIAGNOSTICS, ERROR, WARNING, INFO, ERRORS }

    public record Node(String id, String label, String description, String tooltip, Icon icon, String sessionId,
            boolean live, List<Node> children) {
        Node(String id, String label, String description, Icon icon) {
            this(id, label, description, null, icon, null, false, List.of());
        }
    }

    public static Icon stateIcon(SessionSnapshot s) {
        if (s.state() == null) {
            return Icon.ENDED;
        }
        return switch (s.state()) {
            case STARTING -> Icon.STARTING;
            case READY -> Icon.READY;
            case FAILED -> Icon.FAILED;
            case ENDED -> Icon.ENDED;
        };
    }

    public static Node diagnostic(String parent, Diagnostic d, int i) {
        Icon icon = d.severity() == null ? Icon.INFO : switch (d.severity()) {
            case ERROR -> Icon.ERROR;
            case WARNING -> Icon.WARNING;
            case INFO -> Icon.INFO;
        };
        String fix = d.fix() == null ? "" : "\n\n" + (d.fix().applied() ? "Fixed" : "Fix") + ": " + d.fix().description();
        return new Node(parent + "/diagnostic/" + i, d.message(), d.id(), d.message() + " (" + d.id() + ")" + fix, icon,
                null, false, List.of());
    }

    /** A session with its details as children; {@code nowMillis} for the ages. */
    public static Node session(SessionSnapshot s, long nowMillis) {
        String id = "session/" + s.id();
        Counters c = s.counters();
        long attached = s.attached();
        String state = s.state() == null ? "unknown" : s.state().wire();
        List<Node> children = new ArrayList<>();
        children.add(new Node(id + "/target", "target",
                s.agent() != null ? s.target() + " · agent " + s.agent().version() + " (pid " + s.agent().targetPid() + ")"
                        : s.target(),
                Icon.TARGET));
        children.add(new Node(id + "/state", "state",
                s.endReason() != null ? state + ": " + s.endReason() : state + " · " + Format.age(s.created(), nowMillis),
                s.endReason(), stateIcon(s), null, false, List.of()));
        List<Node> procs = new ArrayList<>();
        for (ProcessInfo p : s.processes()) {
            procs.add(new Node(id + "/process/" + p.pid(), p.pid() + " " + Format.basename(p.executable()),
                    (p.skipped() ? "skipped · " : "") + Format.age(p.since(), nowMillis), p.executable(),
                    p.skipped() ? Icon.PROCESS_SKIPPED : Icon.PROCESS, null, false, List.of()));
        }
        long skipped = s.processes().size() - attached;
        children.add(new Node(id + "/processes", "processes",
                attached + " attached" + (skipped > 0 ? ", " + skipped + " skipped" : ""), null, Icon.PROCESS, null, false,
                procs));
        children.add(new Node(id + "/connections", "connections",
                c.connectionsOpen() + " open, " + c.connectionsTotal() + " total", Icon.CONNECTIONS));
        children.add(new Node(id + "/bytes", "bytes", "in " + Format.bytes(c.bytesIn()) + " · out " + Format.bytes(c.bytesOut()),
                "Bytes through relayed connections. Sockets handed to the program directly run at kernel speed and are not counted.",
                Icon.BYTES, null, false, List.of()));
        children.add(new Node(id + "/files", "files read", c.filesRead() + " · DNS lookups " + c.dnsLookups(), Icon.FILES));
        if (!s.diagnostics().isEmpty()) {
            List<Node> ds = new ArrayList<>();
            for (int i = 0; i < s.diagnostics().size(); i++) {
                ds.add(diagnostic(id, s.diagnostics().get(i), i));
            }
            children.add(new Node(id + "/diagnostics", "diagnostics", String.valueOf(ds.size()), null, Icon.DIAGNOSTICS,
                    null, false, ds));
        }
        if (!s.lastErrors().isEmpty()) {
            List<Node> es = new ArrayList<>();
            List<String> errors = s.lastErrors();
            for (int i = errors.size() - 1; i >= 0; i--) { // newest first
                es.add(new Node(id + "/error/" + (errors.size() - 1 - i), errors.get(i), null, errors.get(i), Icon.ERROR,
                        null, false, List.of()));
            }
            children.add(new Node(id + "/errors", "last errors", String.valueOf(es.size()), null, Icon.ERRORS, null, false,
                    es));
        }
        String label = s.launchName() != null && !s.launchName().isEmpty() ? s.launchName() : s.target();
        String description = state + " · " + s.target() + " · " + attached + " process" + (attached == 1 ? "" : "es");
        String tooltip = "Session " + s.id() + "\nTarget " + s.target() + "\nState " + state
                + (s.endReason() != null ? " (" + s.endReason() + ")" : "")
                + (s.workspaceFolder() != null ? "\nFolder " + s.workspaceFolder() : "");
        return new Node(id, label, description, tooltip, stateIcon(s), s.id(), s.isLive(), children);
    }

    /** The status-bar text: enabled or not, and the live sessions. */
    public static String statusText(boolean enabled, int live, boolean connected) {
        if (!connected) {
            return "Tether: no daemon";
        }
        String count = live > 0 ? " · " + live + " session" + (live == 1 ? "" : "s") : "";
        return (enabled ? "Tether: on" : "Tether: off") + count;
    }

    /** Formatting shared by the tree and notifications. */
    public static final class Format {
        private Format() {}

        public static String bytes(long n) {
            if (n < 1024) {
                return n + " B";
            }
            String[] units = {"KiB", "MiB", "GiB", "TiB"};
            double v = n;
            int i = -1;
            do {
                v /= 1024;
                i++;
            } while (v >= 1024 && i < units.length - 1);
            return (v < 10 ? String.format(Locale.ROOT, "%.1f", v) : String.valueOf(Math.round(v))) + " " + units[i];
        }

        /** "12s", "3m 4s", "2h 5m" since {@code epochSeconds}. */
        public static String age(long epochSeconds, long nowMillis) {
            long s = Math.max(0, nowMillis / 1000 - epochSeconds);
            if (s < 60) {
                return s + "s";
            }
            if (s < 3600) {
                return s / 60 + "m " + s % 60 + "s";
            }
            return s / 3600 + "h " + (s % 3600) / 60 + "m";
        }

        public static String basename(String p) {
            if (p == null) {
                return "";
            }
            int i = p.lastIndexOf('/');
            return i >= 0 ? p.substring(i + 1) : p;
        }
    }
}
