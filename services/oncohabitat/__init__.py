"""OncoHabitat: breast DCE-MRI habitat radiomics inference platform."""

__version__ = "0.1.0"
