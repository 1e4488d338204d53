package dev.tether.core;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import java.util.ArrayList;
import java.util.List;

/** The one Gson configuration of the core, and small helpers for JSON trees. */
public final class Json {
    /** Omits null fields (optional parameters are left out, as the daemon expects). */
    public static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();
    private static final Gson WITH_NULLS = new GsonBuilder().disableHtmlEscaping().serializeNulls().create();

    private Json() {}

    /** {@code e} as text, keeping explicit JSON nulls. */
    public static String withNulls(JsonElement e) {
        return WITH_NULLS.toJson(e);
    }

    /** A JSON value's kind, worded as the doctor words it ("a number", "a list", ...). */
    public static String kind(JsonElement v) {
        if (v == null || v.isJsonNull()) {
            return "null";
        }
        if (v.isJsonArray()) {
            return "a list";
        }
        if (v.isJsonObject()) {
            return "an object";
        }
        JsonPrimitive p = v.getAsJsonPrimitive();
        if (p.isBoolean()) {
            return "a boolean";
        }
        if (p.isNumber()) {
            return "a number";
        }
        return "a string";
    }

    public static JsonArray strings(List<String> items) {
        JsonArray a = new JsonArray();
        for (String s : items) {
            a.add(s);
        }
        return a;
    }

    /** A string field, or {@code null} when missing or not a string. */
    public static String string(JsonObject o, String field) {
        JsonElement e = o == null ? null : o.get(field);
        return e != null && e.isJsonPrimitive() && e.getAsJsonPrimitive().isString() ? e.getAsString() : null;
    }

    /** A list-of-strings field, or {@code null} when missing or not such a list. */
    public static List<String> stringList(JsonObject o, String field) {
        JsonElement e = o == null ? null : o.get(field);
        if (e == null || !e.isJsonArray()) {
            return null;
        }
        List<String> out = new ArrayList<>();
        for (JsonElement x : e.getAsJsonArray()) {
            if (!x.isJsonPrimitive() || !x.getAsJsonPrimitive().isString()) {
                return null;
            }
            out.add(x.getAsString());
        }
        return out;
    }
}
