package dev.tether.core.go;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonPrimitive;
import dev.tether.core.Json;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Merges {@code -linkmode external} into Go build flags (GoLand's "Go tool arguments", VS Code's
 * {@code buildFlags}): the port of the doctor's rules in {@code doctor/src/go.rs}, giving the
 * same results and the same messages.
 *
 * <p>Go honours only the <b>last</b> {@code -ldflags}, so the flag is added to that one's value,
 * never as a second {@code -ldflags} that would silently drop the user's {@code -X} or
 * {@code -s -w}; without any, {@code -ldflags='-linkmode external'} is added. The user's form
 * (a string or a list), quoting and every other flag are kept; only the changed word is
 * rewritten. Already external: nothing changes. {@code -linkmode internal} or
 * {@code -extldflags -static}: a conflict, nothing changes.
 */
public final class GoBuildFlags {
    /** What is merged. */
    public static final String LINKMODE = "-linkmode external";

    /** Go build flags whose value is the next word (so that value is not a flag). */
    private static final Set<String> VALUE_FLAGS = Set.of("-o", "-p", "-C", "-asmflags", "-buildmode", "-compiler",
            "-gccgoflags", "-gcflags", "-installsuffix", "-mod", "-modfile", "-overlay", "-pgo", "-pkgdir", "-tags",
            "-toolexec", "-covermode", "-coverpkg", "-coverprofile", "-exec");

    private GoBuildFlags() {}

    /** The result of a merge. */
    public sealed interface Outcome permits Merged, AlreadyExternal, Conflict {}

    /** The flags were changed: the new value (same form as given) and what changed. */
    public record Merged(JsonElement flags, String change) implements Outcome {}

    /** The last {@code -ldflags} already links externally; {@code found} is the linker flag. */
    public record AlreadyExternal(String found) implements Outcome {}

    /** The flags ask for a static or internally linked binary; nothing changed. */
    public record Conflict(String found, String why) implements Outcome {}

    /** Flags that cannot be read: wrong type, unterminated quote, {@code -ldflags} without a value. */
    public static final class InvalidFlagsException extends Exception {
        public InvalidFlagsException(String message) {
            super(message);
        }
    }

    /** Merges into {@code flags}: a string, a list of strings, or null/missing. */
    public static Outcome merge(JsonElement flags) throws InvalidFlagsException {
        return mergeWithGoflags(flags, null);
    }

    /** The list form: GoLand's tool arguments as the IDE splits them. */
    public static Outcome merge(List<String> flags) throws InvalidFlagsException {
        return mergeList(new ArrayList<>(flags), null);
    }

    /** The string form: words as a POSIX shell splits them. */
    public static Outcome merge(String flags) throws InvalidFlagsException {
        return mergeString(flags, null);
    }

    /**
     * Like {@link #merge(JsonElement)}, also given {@code GOFLAGS}: when the flags have no
     * {@code -ldflags} but {@code GOFLAGS} has one, the added flag carries its value too (a
     * command-line {@code -ldflags} replaces the one in {@code GOFLAGS}).
     */
    public static Outcome mergeWithGoflags(JsonElement flags, String goflags) throws InvalidFlagsException {
        String inherited = goflags == null ? null : goflagsLdflags(goflags);
        if (flags == null || flags.isJsonNull()) {
            return mergeString("", inherited);
        }
        if (flags.isJsonPrimitive() && flags.getAsJsonPrimitive().isString()) {
            return mergeString(flags.getAsString(), inherited);
        }
        if (flags.isJsonArray()) {
            JsonArray items = flags.getAsJsonArray();
            List<String> list = new ArrayList<>(items.size());
            for (int i = 0; i < items.size(); i++) {
                JsonElement v = items.get(i);
                if (!v.isJsonPrimitive() || !v.getAsJsonPrimitive().isString()) {
                    throw new InvalidFlagsException("element " + i + " is " + Json.kind(v) + ", not a string");
                }
                list.add(v.getAsString());
            }
            return mergeList(list, inherited);
        }
        throw new InvalidFlagsException("it is " + Json.kind(flags) + ", not a string or a list of strings");
    }

    /** One {@code -ldflags}: the index of the word holding its value, whether inline, the value. */
    private record Ldflags(int at, boolean inline, String value) {}

    /** {@code --x} is read as {@code -x}. */
    private static String flagName(String w) {
        return w.startsWith("--") ? w.substring(1) : w;
    }

    private static List<Ldflags> findLdflags(List<String> words) throws InvalidFlagsException {
        List<Ldflags> found = new ArrayList<>();
        int i = 0;
        while (i < words.size()) {
            String w = words.get(i);
            String name = flagName(w);
            if (name.equals("-ldflags")) {
                if (i + 1 >= words.size()) {
                    throw new InvalidFlagsException("`" + w + "` has no value");
                }
                found.add(new Ldflags(i + 1, false, words.get(i + 1)));
                i += 2;
                continue;
            }
            if (name.startsWith("-ldflags=")) {
                found.add(new Ldflags(i, true, name.substring("-ldflags=".length())));
            } else if (VALUE_FLAGS.contains(name)) {
                i++;
            }
            i++;
        }
        return found;
    }

    /** The linker flags in an {@code -ldflags} value, after Go's optional {@code pattern=} prefix. */
    private static List<String> linkerArgs(String value) throws InvalidFlagsException {
        String v = value.stripLeading();
        String args;
        if (v.isEmpty() || v.startsWith("-")) {
            args = v;
        } else {
            int eq = v.indexOf('=');
            if (eq < 0) {
                throw new InvalidFlagsException("`-ldflags=" + value + "`: missing =<flags> after the package pattern");
            }
            args = v.substring(eq + 1);
        }
        try {
            return ShellWords.values(args);
        } catch (ShellWords.SyntaxException e) {
            throw new InvalidFlagsException("`-ldflags` value `" + value + "`: " + e.getMessage());
        }
    }

    /** Decides from the last {@code -ldflags} value whether anything must be added ({@code null}: add). */
    private static Outcome judge(String value) throws InvalidFlagsException {
        List<String> args = linkerArgs(value);
        String[] linkmode = null; // {mode, text}
        String staticExt = null;
        int i = 0;
        while (i < args.size()) {
            String a = args.get(i);
            String name = flagName(a);
            int eq = name.indexOf('=');
            String flag;
            String val;
            int used;
            if (eq >= 0) {
                flag = name.substring(0, eq);
                val = name.substring(eq + 1);
                used = 1;
            } else {
                flag = name;
                val = i + 1 < args.size() ? args.get(i + 1) : null;
                used = 2;
            }
            switch (flag) {
                case "-linkmode" -> {
                    String v = val == null ? "" : val;
                    linkmode = new String[] {v, used == 1 ? a : a + " " + v};
                    i += used;
                }
                case "-extldflags" -> {
                    String v = val == null ? "" : val;
                    boolean isStatic;
                    try {
                        isStatic = ShellWords.values(v).contains("-static");
                    } catch (ShellWords.SyntaxException e) {
                        isStatic = false;
                    }
                    staticExt = isStatic ? (used == 1 ? a : a + " '" + v + "'") : null;
                    i += used;
                }
                default -> i++;
            }
        }
        if (staticExt != null) {
            return new Conflict(staticExt, "asks the C linker for a static binary");
        }
        if (linkmode != null && linkmode[0].equals("external")) {
            return new AlreadyExternal(linkmode[1]);
        }
        if (linkmode != null && linkmode[0].equals("internal")) {
            return new Conflict(linkmode[1], "makes Go link the binary itself, statically");
        }
        return null;
    }

    /** The separator between an existing value and the added flag. */
    private static String sep(String value) {
        return value.strip().isEmpty() || value.endsWith(" ") || value.endsWith("\t") ? "" : " ";
    }

    private static Outcome mergeString(String text, String inherited) throws InvalidFlagsException {
        List<ShellWords.Word> words = split(text);
        List<String> values = new ArrayList<>();
        for (ShellWords.Word w : words) {
            values.add(w.value());
        }
        List<Ldflags> all = findLdflags(values);
        if (all.isEmpty()) {
            String value = inherited != null ? inherited + " " + LINKMODE : LINKMODE;
            String added = "-ldflags=" + ShellWords.quote(value);
            String joiner = text.isEmpty() || text.endsWith(" ") || text.endsWith("\t") || text.endsWith("\n") ? "" : " ";
            String change = inherited != null
                    ? "added `" + added + "` to buildFlags (keeping GOFLAGS' `-ldflags=" + inherited
                            + "`, which a command-line -ldflags replaces)"
                    : "added `" + added + "` to buildFlags";
            return new Merged(new JsonPrimitive(text + joiner + added), change);
        }
        Ldflags last = all.get(all.size() - 1);
        Outcome judged = judge(last.value());
        if (judged != null) {
            return judged;
        }
        ShellWords.Word w = words.get(last.at());
        String raw = w.raw(text);
        String s = sep(last.value());
        String newRaw;
        if (w.closingQuote() != null) {
            // Inside the closing quote: the user's quoting stays as it was.
            newRaw = raw.substring(0, raw.length() - 1) + s + LINKMODE + w.closingQuote();
        } else if (raw.indexOf('\'') < 0 && raw.indexOf('"') < 0 && raw.indexOf('\\') < 0) {
            String prefix = last.inline() ? raw.substring(0, Math.max(raw.indexOf('='), 0) + 1) : "";
            newRaw = prefix + ShellWords.quote(last.value() + s + LINKMODE);
        } else {
            // Quoted in the middle, bare at the end: append a quoted piece to the same word.
            newRaw = raw + ShellWords.quote(s + LINKMODE);
        }
        String oldFlag = flagText(text, words, last);
        String newText = text.substring(0, w.start()) + newRaw + text.substring(w.end());
        String newFlag = flagText(newText, split(newText), last);
        return new Merged(new JsonPrimitive(newText),
                "added `" + LINKMODE + "` to the last -ldflags: `" + oldFlag + "` → `" + newFlag + "`");
    }

    private static List<ShellWords.Word> split(String text) throws InvalidFlagsException {
        try {
            return ShellWords.split(text);
        } catch (ShellWords.SyntaxException e) {
            throw new InvalidFlagsException(e.getMessage());
        }
    }

    /** The text of an {@code -ldflags} flag with its value. */
    private static String flagText(String text, List<ShellWords.Word> words, Ldflags l) {
        int from = l.inline() ? l.at() : l.at() - 1;
        return text.substring(words.get(from).start(), words.get(l.at()).end());
    }

    private static Outcome mergeList(List<String> list, String inherited) throws InvalidFlagsException {
        List<Ldflags> all = findLdflags(list);
        if (all.isEmpty()) {
            String value = inherited != null ? inherited + " " + LINKMODE : LINKMODE;
            String added = "-ldflags=" + value;
            list.add(added);
            return new Merged(Json.strings(list), "added `" + added + "` to buildFlags");
        }
        Ldflags last = all.get(all.size() - 1);
        Outcome judged = judge(last.value());
        if (judged != null) {
            return judged;
        }
        String old = list.get(last.at());
        String newValue = last.value() + sep(last.value()) + LINKMODE;
        list.set(last.at(), last.inline() ? old.substring(0, Math.max(old.indexOf('='), 0) + 1) + newValue : newValue);
        String before = last.inline() ? old : list.get(last.at() - 1) + " " + debugString(old);
        String after = last.inline() ? list.get(last.at()) : list.get(last.at() - 1) + " " + debugString(list.get(last.at()));
        return new Merged(Json.strings(list),
                "added `" + LINKMODE + "` to the last -ldflags: `" + before + "` → `" + after + "`");
    }

    /** A string as Rust's {@code {:?}} shows it (for the change descriptions of the list form). */
    static String debugString(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                case '\0' -> b.append("\\0");
                default -> {
                    if (c < 0x20 || c == 0x7f) {
                        b.append("\\u{").append(Integer.toHexString(c)).append('}');
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    /** The value of the last {@code -ldflags=V} in {@code GOFLAGS} (space-separated, no quoting). */
    static String goflagsLdflags(String goflags) {
        String found = null;
        for (String w : goflags.strip().split("\\s+")) {
            String name = flagName(w);
            if (name.startsWith("-ldflags=")) {
                found = name.substring("-ldflags=".length());
            }
        }
        return found == null || found.isEmpty() ? null : found;
    }

    /** The flags as a list, whatever form they came in (for running {@code go} without a shell). */
    public static List<String> words(JsonElement flags) throws InvalidFlagsException {
        if (flags == null || flags.isJsonNull()) {
            return new ArrayList<>();
        }
        if (flags.isJsonArray()) {
            List<String> out = new ArrayList<>();
            for (JsonElement e : flags.getAsJsonArray()) {
                out.add(e.getAsString());
            }
            return out;
        }
        List<String> out = new ArrayList<>();
        for (ShellWords.Word w : split(flags.getAsString())) {
            out.add(w.value());
        }
        return out;
    }
}
