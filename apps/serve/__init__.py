"""``diaproto serve``: the Dia streaming service (synthetic voice, or the real Dia model)."""
