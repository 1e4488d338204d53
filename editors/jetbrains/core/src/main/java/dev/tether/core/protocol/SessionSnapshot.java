package dev.tether.core.protocol;

import java.util.List;

/** A session as clients see it; also the parameters of {@code tether/sessionChanged}. */
public record SessionSnapshot(
        String id,
        String target,
        SessionState state,
        AgentInfo agent,
        List<ProcessInfo> processes,
        Counters counters,
        List<String> lastErrors,
        List<Diagnostic> diagnostics,
        long created,
        String endReason,
        String launchName,
        String workspaceFolder) {

    @Override
    public List<ProcessInfo> processes() {
        return processes == null ? List.of() : processes;
    }

    @Override
    public Counters counters() {
        return counters == null ? Counters.ZERO : counters;
    }

    @Override
    public List<String> lastErrors() {
        return lastErrors == null ? List.of() : lastErrors;
    }

    @Override
    public List<Diagnostic> diagnostics() {
        return diagnostics == null ? List.of() : diagnostics;
    }

    public boolean isLive() {
        return state != null && state.isLive();
    }

    /** Processes that joined and are intercepted (not in the skip list). */
    public long attached() {
        return processes().stream().filter(p -> !p.skipped()).count();
    }
}
