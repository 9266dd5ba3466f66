"""Section tests shared by SourceData and KeyData (both have a ``section``)."""

__all__ = ['SectionTests']


class SectionTests:
    """``is_control`` ... ``is_auxiliary`` from ``self.section`` (no I/O)."""
    __slots__ = ()

    @property
    def is_control(self) -> bool:
        return self.section == 'CONTROL'

    @property
    def is_instrument(self) -> bool:
        return self.section == 'INSTRUMENT'

    @property
    def is_reduction(self) -> bool:
        return self.section == 'REDUCTION'

    @property
    def is_errata(self) -> bool:
        return self.section == 'ERRATA'

    @property
    def is_auxiliary(self) -> bool:
        """REDUCTION or ERRATA data."""
        return self.section in ('REDUCTION', 'ERRATA')
