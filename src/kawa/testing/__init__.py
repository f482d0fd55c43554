"""Test helpers shipped with kawa (as Fluentd ships its test drivers): build a plugin from a config
string through the real parser and schema, feed it events, read what came out; no daemon needed."""
