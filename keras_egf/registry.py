"""One small registry type for everything keras-egf looks up by name.

Architectures, pruning methods, sparsity distributions, dynamic sparse
training methods and optimizers are each a `Registry`. A registry is read
when a name is used, never copied at import, so something registered
later (by a user, after `import keras_egf`) is accepted everywhere: by the
config, the grid and the binaries' flags.

    OPTIMIZERS = Registry("optimizer", register_with="keras_egf.optimizers.register_optimizer")
    OPTIMIZERS.register("sgd", make_sgd)
    OPTIMIZERS.get("sgd")        # make_sgd
    OPTIMIZERS.get("lion")       # ValueError: Unknown optimizer 'lion'. Supported: ...

Unknown names get one wording everywhere: "Unknown <kind> <name>. Supported:
<names>. Register one with <function>."
"""

import collections.abc


class Registry(collections.abc.Mapping):
    """Name → entry, in registration order, with one error wording.

    Args:
        kind: what an entry is, for messages ("pruning method").
        register_with: the public function users call to add one, named in
            the error for an unknown name.
    """

    def __init__(self, kind, register_with):
        self.kind = kind
        self.register_with = register_with
        self._entries = {}

    def register(self, name, entry, overwrite=False):
        """Adds `entry` under `name`; refuses to replace one unless `overwrite`."""
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"A {self.kind} name must be a non-empty string. Received: name={name!r}")
        if name in self._entries and not overwrite:
            raise ValueError(
                f"A {self.kind} named {name!r} is already registered; pass "
                f"overwrite=True to replace it.")
        self._entries[name] = entry
        return entry

    def unregister(self, name):
        """Removes `name` (tests and plugins that register temporarily)."""
        self.get(name)
        del self._entries[name]

    def check(self, name):
        """Returns `name` if registered, else raises the one wording."""
        if name not in self._entries:
            raise ValueError(self.unknown_message(name))
        return name

    def get(self, name, default=None):  # noqa: D401 (Mapping's signature)
        """The entry registered as `name`; an unknown name raises ValueError."""
        return self._entries[self.check(name)]

    def unknown_message(self, name):
        return (f"Unknown {self.kind} {name!r}. Supported: {self.names()}. "
                f"Register one with {self.register_with}.")

    def names(self):
        """The registered names, in registration order."""
        return list(self._entries)

    def __getitem__(self, name):
        return self.get(name)

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __repr__(self):
        return f"Registry({self.kind!r}, {self.names()})"
